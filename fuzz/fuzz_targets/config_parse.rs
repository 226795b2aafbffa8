//! Arbitrary text as a configuration file (`Config::from_toml`; non-UTF-8 input is skipped):
//! it never panics; an error with a position has a line and a column inside the text; an
//! accepted config builds a policy table that holds every configured domain.
#![no_main]

use force_https::fuzzing::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(e) = config(text) else {
        return;
    };
    match (e.line, e.column) {
        (Some(line), Some(column)) => {
            // Lines as `line_col` counts them: split on `\n` only; a position may be one past
            // the last character of its line (end of input, or the newline itself).
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                line >= 1 && line <= lines.len(),
                "line {line} of {}: {}",
                lines.len(),
                e.display
            );
            let chars = lines[line - 1].chars().count();
            assert!(
                column >= 1 && column <= chars + 1,
                "column {column} of {chars}: {}",
                e.display
            );
        }
        (None, None) => assert!(!e.display.contains("is not in the table"), "{}", e.display),
        _ => panic!("a line without a column or the reverse: {}", e.display),
    }
});
