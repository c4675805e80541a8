//! Python (confluent-kafka, kafka-python) and kcat round trips against the real broker, so
//! `cargo test` covers every client family the README promises. `.ci/run` installs them.

use std::process::Command;

#[test]
fn python_clients_and_kcat_round_trip() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
        .output()
        .expect("run tests/python/run.sh (needs bash)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client round trips failed (install the clients with .ci/run or `pip install confluent-kafka kafka-python` and `apt-get install kcat`):\n{stdout}\n{stderr}"
    );
}
