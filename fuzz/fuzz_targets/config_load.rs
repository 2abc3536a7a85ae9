//! Fuzz target: the YAML configuration loader on arbitrary UTF-8, through the same path `run` takes up to binding.
//!
//! Checks: parsing and validation never panic, whatever the text; an error renders (`Display`) without
//! panicking either; and a configuration that validates is built as `run` builds it (`app::check`: metrics,
//! hub, routes, TLS, connection permits — everything but binding sockets) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushbridge::config::Config;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match Config::parse("fuzz.yaml", text) {
        Ok(config) => {
            if let Err(error) = pushbridge::app::check(config) {
                let _ = error.to_string();
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
