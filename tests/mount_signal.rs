//! SIGTERM and SIGINT unmount a foreground `mount()` cleanly (its own test binary: the
//! handlers are process-wide).

mod support;

use support::common;

use std::fs;
use std::time::{Duration, Instant};

use coffer::fs::MountOptions;
use common::{fuse_available, is_mounted, spawn_mount, unmounted_vault, PASSWORD};

#[test]
fn signals_unmount_cleanly() {
    if !fuse_available() {
        return;
    }
    let (_tmp, cipher, mnt) = unmounted_vault();
    let canon = mnt.canonicalize().unwrap();
    for (i, sig) in [libc::SIGTERM, libc::SIGINT].into_iter().enumerate() {
        let vault = coffer::vault::Vault::unlock(&cipher, None, PASSWORD, false).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mnt2 = mnt.clone();
        let server = std::thread::spawn(move || {
            coffer::fs::mount(
                vault,
                &mnt2,
                &MountOptions::default(),
                Box::new(move || tx.send(()).unwrap()),
            )
        });
        rx.recv_timeout(Duration::from_secs(20)).expect("on_ready ran");
        fs::write(mnt.join(format!("f{i}")), b"written before the signal").unwrap();
        // SAFETY: signalling our own process; mount() installed handlers before on_ready.
        unsafe { libc::kill(libc::getpid(), sig) };
        let start = Instant::now();
        while !server.is_finished() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "signal {sig} did not unmount"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.join().unwrap().unwrap();
        assert!(!is_mounted(&canon), "still mounted after signal {sig}");
    }
    let h = spawn_mount(&cipher, &mnt, &MountOptions::default()).unwrap();
    assert_eq!(
        fs::read(h.mountpoint().join("f1")).unwrap(),
        b"written before the signal"
    );
}
