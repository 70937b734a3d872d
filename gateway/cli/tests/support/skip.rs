//! `skip`: how a test that cannot run here says so. One copy, included by the support
//! module of every crate whose tests can skip (gatehouse-cli, gatehouse-origin).

use std::io::Write;

/// Says that `test` did not run and why: `SKIPPED: <test>: <why>` on stderr, and the same
/// line appended to the file `GATEHOUSE_SKIP_LOG` names, if set (`scripts/test` reads it, so
/// a skip shows even when cargo captures the test's output).
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED: {test}: {why}\n");
    eprint!("{line}");
    if let Some(log) = std::env::var_os("GATEHOUSE_SKIP_LOG") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("GATEHOUSE_SKIP_LOG");
        file.write_all(line.as_bytes()).expect("write to GATEHOUSE_SKIP_LOG");
    }
}
