//! Every shipped config (config.example.yaml and examples/*.yaml) passes validation; TLS paths are pointed at
//! a freshly made certificate and key (validation parses them as `run` does).

mod support;

use pushbridge::config::Config;

#[test]
fn shipped_configs_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    support::certs::TestCa::new().leaf_files(dir.path(), support::certs::KeyKind::EcdsaP256);
    let tls_dir = format!("{}/", dir.path().display());
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("/etc/pushbridge/tls/", &tls_dir);
            if let Err(error) = Config::parse(&path.display().to_string(), &text) {
                panic!("{} is invalid:\n{error}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "found {checked} example configs");
}

#[test]
fn per_client_mode_refuses_long_poll() {
    let yaml = r#"
listen: [{ address: "127.0.0.1:0" }]
streams:
  - path: /me
    upstream: { url: "http://127.0.0.1:1/me" }
    mode: per-client
"#;
    let error = Config::parse("t.yaml", yaml).unwrap_err().to_string();
    assert!(
        error.contains("streams[0].transports[2]") && error.contains("per-client"),
        "{error}"
    );
}
