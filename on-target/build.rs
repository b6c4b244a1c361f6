//! Turns `fixtures/traces/*.json` into `fixtures.bin` (postcard records, see
//! `src/records.rs`) for the firmware to `include_bytes!`, and puts the
//! board's `memory.x` on the linker's path.
//!
//! `RATEBOUND_FIXTURES`, when set and not empty, names another directory of
//! fixtures (`run.sh` uses it to prove that a wrong expected value fails).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use heapless::Vec as HVec;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[path = "src/records.rs"]
#[allow(dead_code)]
mod records;

use records::*;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-env-changed=RATEBOUND_FIXTURES");
    println!("cargo:rerun-if-changed=src/records.rs");
    let dir = env::var_os("RATEBOUND_FIXTURES")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../fixtures/traces"));
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut image = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures in {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        // Changing a config while its states live on is what the stores
        // of ratebound-std and the npm package do; on a chip a config is
        // fixed at build time (the decisions themselves are the same core
        // code these records already cover).
        .filter(|p| !p.ends_with("reconfigure.json"))
        .collect();
    files.sort();
    let (mut steps, mut atomic_steps) = (0, 0);
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let (s, a) = write_file(path, &mut image);
        steps += s;
        atomic_steps += a;
    }
    push(
        &mut image,
        &Record::Counts {
            steps,
            atomic_steps,
        },
    );
    fs::write(out.join("fixtures.bin"), &image).unwrap();

    let target = env::var("TARGET").unwrap();
    let memory = match target.as_str() {
        "thumbv6m-none-eabi" => "memory/microbit.x",
        "thumbv7em-none-eabihf" => "memory/mps2-an386.x",
        "riscv32imc-unknown-none-elf" => "memory/riscv-virt.x",
        other => panic!("no board for target {other}"),
    };
    println!("cargo:rerun-if-changed={memory}");
    fs::copy(manifest.join(memory), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
}

fn push(image: &mut Vec<u8>, record: &Record<'_>) {
    image.extend(postcard::to_allocvec(record).expect("a record serializes"));
}

fn from<T: DeserializeOwned>(v: &Value, what: &str) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what} in {v}: {e}"))
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("integer {k} in {v}"))
}

/// A 32-bit half of a 64-bit value.
fn half(v: &Value, k: &str) -> u64 {
    let h = u(v, k);
    assert!(
        h <= u64::from(u32::MAX),
        "{k} = {h} is not a 32-bit half in {v}"
    );
    h
}

fn code(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("an error code, not {v}"))
}

fn heap<T, const N: usize>(items: impl IntoIterator<Item = T>, what: &str) -> HVec<T, N> {
    let mut v = HVec::new();
    for item in items {
        if v.push(item).is_err() {
            panic!("more than {N} {what}: raise the bound in src/records.rs");
        }
    }
    v
}

/// Writes one fixture file's records; returns its steps, and how many of
/// them replay again through `AtomicGcra` (the GCRA traces it accepts).
fn write_file(path: &Path, image: &mut Vec<u8>) -> (u32, u32) {
    let text = fs::read_to_string(path).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["format"], 1, "fixture format of {}", path.display());
    let machine = file["machine"].as_str().expect("machine");
    let (mut steps, mut atomic_steps) = (0, 0);
    for trace in file["traces"].as_array().expect("traces") {
        // A trace that changes its config mid-way (the budgets'), skipped
        // for the reason `reconfigure.json` is.
        if trace["steps"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["op"] == "reconfigure"))
        {
            continue;
        }
        let name = trace["name"].as_str().expect("trace name");
        let config = &trace["config"];
        let setup = setup(machine, config);
        let members = match &setup {
            Setup::Policy(m) => m.iter().map(|(m, _)| *m).collect(),
            _ => std::vec::Vec::new(),
        };
        let atomic = matches!(setup, Setup::Gcra(g) if ratebound_core::AtomicGcra::new(g).is_ok());
        let scopes = match &setup {
            Setup::ModelQuota(q) => q.len(),
            _ => 0,
        };
        push(
            image,
            &Record::Trace {
                machine,
                name,
                setup,
            },
        );
        for s in trace["steps"].as_array().expect("steps") {
            let step = step(machine, s, &members);
            if let Step::ModelQuota { scope, .. } = &step {
                assert!(
                    (*scope as usize) < scopes,
                    "{name}: scope {scope} of {scopes}"
                );
            }
            push(image, &Record::Step(step));
            steps += 1;
            atomic_steps += u32::from(atomic);
        }
    }
    (steps, atomic_steps)
}

fn setup(machine: &str, c: &Value) -> Setup {
    match machine {
        "gcra" => Setup::Gcra(from(c, "gcra config")),
        "sliding_log" => Setup::SlidingLog(from(c, "sliding log config")),
        "sliding_counter" => Setup::SlidingCounter(from(c, "sliding counter config")),
        "budget" => Setup::Budget(from(c, "budget config")),
        "policy" => Setup::Policy(heap(
            c["members"].as_array().expect("members").iter().map(|m| {
                let member = if let Some(g) = m.get("gcra") {
                    Member::Gcra(from(g, "gcra member"))
                } else if let Some(l) = m.get("sliding_log") {
                    Member::SlidingLog(from(l, "sliding log member"))
                } else {
                    Member::SlidingCounter(from(&m["sliding_counter"], "sliding counter member"))
                };
                (member, m["cost"].as_u64())
            }),
            "policy members",
        )),
        "keyed" => Setup::Keyed {
            limiter: from(&c["gcra"], "keyed gcra"),
            max_keys: u32::try_from(u(c, "max_keys")).expect("max_keys"),
            evict_least_recent: match c["on_full"].as_str() {
                Some("evict_lru") => true,
                Some("deny") => false,
                other => panic!("on_full {other:?}"),
            },
        },
        "backoff" => Setup::Backoff(
            from(&c["backoff"], "backoff config"),
            (!c["budget"].is_null()).then(|| from(&c["budget"], "retry budget config")),
        ),
        "model_quota" => Setup::ModelQuota(heap(
            c["quotas"]
                .as_array()
                .expect("quotas")
                .iter()
                .map(|q| from(q, "model quota")),
            "model-quota scopes",
        )),
        other => panic!("unknown machine {other}"),
    }
}

fn limiter_state(machine: &str, v: &Value) -> LimiterState {
    match machine {
        "gcra" => LimiterState::Gcra(from(v, "gcra state")),
        "sliding_log" => LimiterState::SlidingLog(from(v, "sliding log state")),
        _ => LimiterState::SlidingCounter(from(v, "sliding counter state")),
    }
}

/// `{"ok": T}` or `{"error": code}`.
fn ok_or_code<'a, T: DeserializeOwned>(e: &'a Value, what: &str) -> Result<T, Code<'a>> {
    match e.get("ok") {
        Some(v) => Ok(from(v, what)),
        None => Err(code(&e["error"])),
    }
}

fn step<'a>(machine: &str, s: &'a Value, members: &[Member]) -> Step<'a> {
    let now = u(s, "now");
    let op = s["op"].as_str().expect("op");
    let e = &s["expect"];
    match machine {
        "gcra" | "sliding_log" | "sliding_counter" => {
            let cost = u(s, "cost");
            let (op, expect) = match op {
                "check" => (
                    LimiterOp::Check(cost),
                    LimiterResult::Decided(ok_or_code(e, "decision")),
                ),
                "peek" => (
                    LimiterOp::Peek(cost),
                    LimiterResult::Decided(ok_or_code(e, "decision")),
                ),
                "at_most" | "refund" if machine != "gcra" => {
                    panic!("{machine} has no {op}: only the GCRA takes at_most and refund")
                }
                "at_most" => (
                    LimiterOp::AtMost(cost),
                    LimiterResult::Taken(u(e, "taken"), from(&e["decision"], "decision")),
                ),
                "refund" => (
                    LimiterOp::Refund(cost),
                    LimiterResult::Refunded(from(e, "decision")),
                ),
                other => panic!("unknown {machine} op {other}"),
            };
            Step::Limiter {
                now,
                op,
                expect,
                state: limiter_state(machine, &s["state"]),
            }
        }
        "budget" => {
            let usage = || from(&s["usage"], "usage");
            let op = match op {
                "reserve" => BudgetOp::Reserve(usage()),
                "settle" => BudgetOp::Settle(u(s, "id"), usage()),
                "release" => BudgetOp::Release(u(s, "id")),
                "record" => BudgetOp::Record(usage()),
                "try_spend" => BudgetOp::TrySpend(usage()),
                "status" => BudgetOp::Status,
                other => panic!("unknown budget op {other}"),
            };
            let expect = match e.get("ok") {
                None => Err(code(&e["error"])),
                Some(ok) => Ok(match op {
                    BudgetOp::Reserve(_) => {
                        let a = &ok["admission"];
                        let admission = match a.get("granted") {
                            Some(h) => Ok(from(h, "reservation")),
                            None => Err(from(&a["denied"], "denial")),
                        };
                        BudgetResult::Reserved(admission, from(&ok["alerts"], "alerts"))
                    }
                    BudgetOp::Settle(..) => BudgetResult::Settled(from(ok, "settled")),
                    BudgetOp::Release(_) => {
                        assert!(ok.is_null(), "release returns nothing: {ok}");
                        BudgetResult::Released
                    }
                    BudgetOp::Record(_) => BudgetResult::Recorded(from(ok, "alerts")),
                    BudgetOp::TrySpend(_) => BudgetResult::Spent(from(ok, "spent")),
                    BudgetOp::Status => BudgetResult::Status(from(ok, "status")),
                }),
            };
            Step::Budget {
                now,
                op,
                expect,
                state: from(&s["state"], "budget state"),
            }
        }
        "policy" => {
            let check = match op {
                "check" => true,
                "peek" => false,
                other => panic!("unknown policy op {other}"),
            };
            let expect = match e.get("ok") {
                Some(ok) => Ok((from(&ok["decision"], "decision"), ok["binding"].as_u64())),
                None => Err((u(&e["error"], "member"), code(&e["error"]["code"]))),
            };
            let states = s["state"].as_array().expect("member states");
            assert_eq!(states.len(), members.len(), "one state per member");
            let state = heap(
                members.iter().zip(states).map(|(m, st)| match m {
                    Member::Gcra(_) => limiter_state("gcra", st),
                    Member::SlidingLog(_) => limiter_state("sliding_log", st),
                    Member::SlidingCounter(_) => limiter_state("sliding_counter", st),
                }),
                "policy members",
            );
            Step::Policy {
                now,
                check,
                cost: u(s, "cost"),
                expect,
                state,
            }
        }
        "keyed" => {
            let key = || s["key"].as_str().expect("key");
            let op = match op {
                "check" => KeyedOp::Check(key(), u(s, "cost")),
                "peek" => KeyedOp::Peek(key(), u(s, "cost")),
                "evict_idle" => KeyedOp::EvictIdle,
                other => panic!("unknown keyed op {other}"),
            };
            let expect = match e.get("evicted") {
                Some(n) => KeyedResult::Evicted(n.as_u64().expect("evicted")),
                None => KeyedResult::Decided(ok_or_code(e, "decision")),
            };
            let keys = heap(
                s["state"]["keys"]
                    .as_array()
                    .expect("keys")
                    .iter()
                    .map(code),
                "keys",
            );
            Step::Keyed {
                now,
                op,
                expect,
                keys,
            }
        }
        "model_quota" => {
            let op = match op {
                "admit" => ModelOp::Admit,
                "peek" => ModelOp::Peek,
                "settle" => ModelOp::Settle(u(s, "id"), from(&s["outcome"], "outcome")),
                other => panic!("unknown model_quota op {other}"),
            };
            let expect = match op {
                ModelOp::Settle(..) => ModelResult::Settled(from(e, "settled")),
                _ => ModelResult::Decided(from(e, "model decision")),
            };
            Step::ModelQuota {
                now,
                scope: u32::try_from(u(s, "scope")).expect("scope"),
                op,
                expect,
                state: from(&s["state"], "model state"),
            }
        }
        "backoff" => {
            let hint = s["hint_us"].as_u64();
            let op = match op {
                "start" => BackoffOp::Start(u(s, "seed")),
                "next" => BackoffOp::Next(hint),
                "next_with_budget" => BackoffOp::NextWithBudget(hint),
                "success" => BackoffOp::Success,
                other => panic!("unknown backoff op {other}"),
            };
            let expect = if e.is_null() {
                BackoffResult::Done
            } else if let Some(r) = e.get("retry") {
                let attempt = u32::try_from(u(r, "attempt")).expect("attempt");
                BackoffResult::Retry(u(r, "at"), u(r, "delay"), attempt)
            } else {
                BackoffResult::GiveUp(from(&e["give_up"], "give up"))
            };
            let st = &s["state"];
            let state = (
                ratebound_core::backoff::BackoffState {
                    attempt: u32::try_from(u(st, "attempt")).expect("attempt"),
                    started: u(st, "started"),
                    prev: u(st, "prev"),
                    rng: half(st, "rng_hi") << 32 | half(st, "rng_lo"),
                },
                ratebound_core::backoff::RetryBudgetState {
                    spent_milli: u(st, "budget_spent_milli"),
                },
            );
            Step::Backoff {
                now,
                op,
                expect,
                state,
            }
        }
        other => panic!("unknown machine {other}"),
    }
}
