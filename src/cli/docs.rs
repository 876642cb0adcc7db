//! Shell completions and man pages, generated from the clap definition.

use std::path::Path;

use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs, GenDocsArgs};
use super::error::{CliError, CliResult};

/// Runs `completions SHELL`: the script on stdout.
pub fn completions(args: &CompletionsArgs) -> CliResult {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "coffer", &mut std::io::stdout());
    Ok(())
}

fn write(path: &Path, data: &[u8]) -> CliResult {
    std::fs::write(path, data).map_err(|e| CliError::io(path, &e))
}

/// Runs `gen-docs ROOT`: writes `ROOT/man/*.1` and `ROOT/completions/*` (deterministic output).
pub fn gen_docs(args: &GenDocsArgs) -> CliResult {
    let man = args.root.join("man");
    let comp = args.root.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).map_err(|e| CliError::io(d, &e))?;
    }
    let cmd = Cli::command();
    write(&man.join("coffer.1"), &render_man(&cmd)?)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("coffer-{}", sub.get_name());
        let mut page = sub.clone().name(name.clone()).display_name(name.clone());
        if let Some(v) = cmd.get_version() {
            page = page.version(v.to_string());
        }
        write(&man.join(format!("{name}.1")), &render_man(&page)?)?;
    }
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "coffer.bash"),
        (Shell::Zsh, "_coffer"),
        (Shell::Fish, "coffer.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "coffer", &mut buf);
        write(&comp.join(file), &buf)?;
    }
    Ok(())
}

fn render_man(cmd: &clap::Command) -> CliResult<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .map_err(|e| CliError::new(super::error::code::OTHER, format!("man page: {e}")))?;
    Ok(buf)
}
