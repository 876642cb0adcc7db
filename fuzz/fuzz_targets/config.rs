//! Fuzz: config parsing, canonical encoding and (cheap-KDF) unlock never panic.
#![no_main]

use coffer::format::config::Config;
use coffer::vault::unlock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = Config::parse(data) else { return };
    let _ = cfg.canonical();
    let _ = cfg.params().validate();
    assert_eq!(Config::parse(&cfg.to_json()).ok().as_ref(), Some(&cfg));
    // KDF bounds allow up to 4 GiB by design: only try to unlock cheap configs.
    if cfg.kdf.m_kib <= 256 && cfg.kdf.t <= 2 {
        assert!(unlock::unlock_with_password(&cfg, b"pw").is_err());
    }
});
