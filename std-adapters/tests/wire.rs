//! The Lua scripts keep a few of core's numbers and codes as constants (a
//! script cannot ask core); each must equal core's `wire` value, so a shell
//! that drifts fails here.
#![cfg(feature = "redis")]

use ratebound_core::budget::Dimension;
use ratebound_core::model_quota::Blocked;
use ratebound_core::{wire, MAX_SAFE_INTEGER, MAX_TICKS};

fn lua(name: &str) -> String {
    let path = format!("{}/src/redis/lua/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

/// The integer a script assigns to `local NAME = <n>`.
fn constant(src: &str, name: &str) -> u64 {
    let decl = format!("local {name} = ");
    let line = src
        .lines()
        .find(|l| l.starts_with(&decl))
        .unwrap_or_else(|| panic!("no `{decl}…` in the script"));
    line[decl.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}: not an integer"))
}

#[test]
fn the_model_script_uses_cores_constants() {
    let src = lua("model.lua");
    let [slots, in_flight, retry] = wire::MODEL_CONSTANTS;
    assert_eq!(constant(&src, "M_LOG_SLOTS"), slots);
    assert_eq!(constant(&src, "M_MAX_IN_FLIGHT"), in_flight);
    assert_eq!(constant(&src, "M_IN_FLIGHT_RETRY"), retry);
    // The reply's blocked codes, as the script documents and returns them.
    let doc = format!(
        "blocked ({} none,\n-- {} total, {} success, {} in_flight)",
        wire::blocked_code(None),
        wire::blocked_code(Some(Blocked::Total)),
        wire::blocked_code(Some(Blocked::Success)),
        wire::blocked_code(Some(Blocked::InFlight)),
    );
    assert!(src.contains(&doc), "model.lua must document {doc:?}");
    let in_flight = wire::blocked_code(Some(Blocked::InFlight));
    assert!(
        src.contains(&format!("), {in_flight}\n")),
        "model.lua returns {in_flight} for in-flight denials"
    );
}

#[test]
fn the_prelude_saturates_where_core_does() {
    let src = lua("prelude.lua");
    assert_eq!(constant(&src, "MAXT"), MAX_TICKS);
    assert_eq!(constant(&src, "SAFE"), MAX_SAFE_INTEGER);
}

#[test]
fn the_budget_script_uses_cores_codes() {
    let src = lua("budget.lua");
    let dims = format!(
        "dimension ({} requests, {} tokens, {} cost)",
        wire::dimension_code(Dimension::Requests),
        wire::dimension_code(Dimension::Tokens),
        wire::dimension_code(Dimension::Cost),
    );
    assert!(src.contains(&dims), "budget.lua must use {dims:?}");
    let codes = format!(
        "code ({} ok, {} unknown reservation)",
        wire::BUDGET_OK,
        wire::BUDGET_UNKNOWN_RESERVATION
    );
    assert!(src.contains(&codes), "budget.lua must reply {codes:?}");
    assert!(src.contains(&format!(
        "return {{ {}, {{}}, {{}}, state_out() }}",
        wire::BUDGET_UNKNOWN_RESERVATION
    )));
}

#[test]
fn the_npm_packages_code_tables_are_cores() {
    let api = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../node/src/retry-api.js"
    ))
    .unwrap();
    let jitter = wire::JITTER_NAMES
        .iter()
        .enumerate()
        .map(|(code, name)| format!("{name}: {code}"))
        .collect::<Vec<_>>()
        .join(", ");
    let jitter = format!("const JITTER = {{ {jitter} }};");
    assert!(api.contains(&jitter), "retry-api.js must hold {jitter}");
    let give_up = wire::GIVE_UP_NAMES
        .iter()
        .map(|n| {
            if n.is_empty() {
                "null".to_owned()
            } else {
                format!("\"{n}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let give_up = format!("const GIVE_UP = [{give_up}];");
    assert!(api.contains(&give_up), "retry-api.js must hold {give_up}");
}

#[test]
fn the_npm_redis_code_tables_are_cores() {
    let read = |f: &str| {
        std::fs::read_to_string(format!(
            "{}/../node/src/redis/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    let budget = read("budget.js");
    let code = format!(
        "const UNKNOWN_RESERVATION = {};",
        wire::BUDGET_UNKNOWN_RESERVATION
    );
    assert!(budget.contains(&code), "budget.js must hold {code}");
    let model = read("model.js");
    let names = (0..)
        .map_while(wire::blocked_from_code)
        .map(|b| b.map_or("null".to_owned(), |b| format!("\"{}\"", b.name())))
        .collect::<Vec<_>>()
        .join(", ");
    let blocked = format!("const BLOCKED = [{names}];");
    assert!(model.contains(&blocked), "model.js must hold {blocked}");
}
