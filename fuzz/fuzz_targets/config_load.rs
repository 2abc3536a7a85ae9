//! Fuzz target: the YAML configuration loader (`pushbridge::config::Config::parse`) on arbitrary UTF-8.
//!
//! Checks: parsing and validation never panic, whatever the text, and an error renders (`Display`) without
//! panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushbridge::config::Config;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Err(error) = Config::parse("fuzz.yaml", text) {
        let _ = error.to_string();
    }
});
