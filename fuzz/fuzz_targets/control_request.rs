//! Arbitrary text as control-socket lines (`admin::protocol::Request` JSON, one per line, at
//! most 16), executed in order against an admin service over the sites of `common/sites.rs` and an
//! empty state directory. It never panics; after every `enable`/`disable` the persisted
//! overrides equal the live table's and the hosts of a successful change have the requested
//! state; a policy reloaded from the state directory equals the live one; every response
//! serializes and parses back.
#![no_main]

use force_https::fuzzing::control;
use libfuzzer_sys::fuzz_target;

include!("../common/sites.rs");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match control(SITES, text) {
        Ok(responses) => {
            for r in responses {
                let v: serde_json::Value = serde_json::from_str(&r).expect("a JSON response");
                assert!(
                    v.get("ok").is_some_and(serde_json::Value::is_boolean),
                    "{r}"
                );
                assert!(!r.contains('\n'), "one line: {r}");
            }
        }
        Err(e) => panic!("{e}"),
    }
});
