//! The Lua code as Redis runs it: one function library loaded once per
//! server (`FUNCTION LOAD`, then `FCALL` / `FCALL_RO`), or, where Redis
//! Functions are missing or refused, the same code as scripts by SHA
//! (`EVALSHA`, falling back to `EVAL` on `NOSCRIPT`).
//!
//! The library's name carries a hash of its code (`ratebound_<hash>`), so
//! servers running different ratebound versions side by side each find
//! their own functions, and loading is idempotent (`REPLACE` with the same
//! code). Each Lua file defines its entry point as a local function; the
//! library registers them, the scripts call them.

use std::sync::LazyLock;

use redis::{Cmd, RedisError, Script, ToRedisArgs};

const PRELUDE: &str = include_str!("lua/prelude.lua");
const LIMIT: &str = include_str!("lua/limit.lua");
const BUDGET: &str = include_str!("lua/budget.lua");
const MODEL: &str = include_str!("lua/model.lua");

/// One entry point of the Lua code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Limiters and policy sets (`limit.lua`).
    Limit,
    /// One GCRA checked, whole-µs interval (`limit.lua`): the common call.
    Gcra,
    /// Budget windows (`budget.lua`).
    Budget,
    /// Model-level total/success counts (`model.lua`).
    Model,
}

impl Entry {
    const ALL: [Entry; 4] = [Entry::Limit, Entry::Gcra, Entry::Budget, Entry::Model];

    fn index(self) -> usize {
        self as usize
    }
    pub(crate) fn lua_name(self) -> &'static str {
        match self {
            Entry::Limit => "limit",
            Entry::Gcra => "gcra",
            Entry::Budget => "budget",
            Entry::Model => "model",
        }
    }
    fn source(self) -> &'static str {
        match self {
            Entry::Limit | Entry::Gcra => LIMIT,
            Entry::Budget => BUDGET,
            Entry::Model => MODEL,
        }
    }
}

/// How a store runs the Lua code, chosen when it connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Redis Functions (Redis 7+): the code is loaded once per server and
    /// each call runs only the entry point.
    Functions,
    /// Scripts by SHA (`EVALSHA`): for servers without Functions (Redis < 7)
    /// or where `FUNCTION LOAD` is refused. Each call re-creates the
    /// helpers, so decisions cost the server more.
    Scripts,
}

pub(crate) struct Code {
    /// `FUNCTION LOAD REPLACE` text.
    pub(crate) library: String,
    /// Function names, per entry: read-write and read-only.
    functions: [(String, String); 4],
    /// Scripts, per entry: text and SHA.
    scripts: [(String, String); 4],
}

pub(crate) static CODE: LazyLock<Code> = LazyLock::new(|| {
    let body = format!("{PRELUDE}\n{LIMIT}\n{BUDGET}\n{MODEL}\n");
    // A content hash: the same code gives the same names on every replica.
    let hash = Script::new(&body).get_hash()[..12].to_owned();
    let functions = Entry::ALL.map(|e| {
        (
            format!("rb_{hash}_{}", e.lua_name()),
            format!("rb_{hash}_{}_ro", e.lua_name()),
        )
    });
    let mut library = format!("#!lua name=ratebound_{hash}\n{body}");
    for (e, (rw, ro)) in Entry::ALL.iter().zip(&functions) {
        let f = e.lua_name();
        library.push_str(&format!(
            "redis.register_function('{rw}', {f})\n\
             redis.register_function{{function_name='{ro}', callback={f}, flags={{'no-writes'}}}}\n"
        ));
    }
    let scripts = Entry::ALL.map(|e| {
        let text = format!(
            "{PRELUDE}\n{}\nreturn {}(KEYS, ARGV)\n",
            e.source(),
            e.lua_name()
        );
        let sha = Script::new(&text).get_hash().to_owned();
        (text, sha)
    });
    Code {
        library,
        functions,
        scripts,
    }
});

impl Code {
    /// The call of `entry` by `how`: `FCALL[_RO] name` or `EVALSHA sha`,
    /// then the keys, the `now` argument (see [`RedisStore::invoke`](super::RedisStore)) and the other arguments.
    pub(crate) fn call<A: ToRedisArgs>(
        &self,
        how: Invocation,
        entry: Entry,
        read_only: bool,
        keys: &[Vec<u8>],
        now: &str,
        args: &[A],
    ) -> Cmd {
        let mut cmd = match how {
            Invocation::Functions => {
                let (rw, ro) = &self.functions[entry.index()];
                let mut c = redis::cmd(if read_only { "FCALL_RO" } else { "FCALL" });
                c.arg(if read_only { ro } else { rw });
                c
            }
            Invocation::Scripts => {
                let mut c = redis::cmd("EVALSHA");
                c.arg(&self.scripts[entry.index()].1);
                c
            }
        };
        cmd.arg(keys.len()).arg(keys).arg(now).arg(args);
        cmd
    }

    /// `EVAL` with the whole script: runs it and puts it in the server's
    /// script cache (after `NOSCRIPT`).
    pub(crate) fn eval<A: ToRedisArgs>(
        &self,
        entry: Entry,
        keys: &[Vec<u8>],
        now: &str,
        args: &[A],
    ) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&self.scripts[entry.index()].0)
            .arg(keys.len())
            .arg(keys)
            .arg(now)
            .arg(args);
        cmd
    }

    /// `FUNCTION LOAD REPLACE` of the library (sent to every master of a
    /// cluster by the cluster client's routing).
    pub(crate) fn load(&self) -> Cmd {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD").arg("REPLACE").arg(&self.library);
        cmd
    }
}

/// The server has no such function: it restarted, its functions were
/// flushed, or it is a fresh replica or node.
pub(crate) fn is_function_missing(e: &RedisError) -> bool {
    e.code() == Some("ERR")
        && e.detail()
            .is_some_and(|d| d.starts_with("Function not found"))
}

/// The server does not know `FUNCTION` (Redis < 7, or renamed away) or
/// refuses it to this user.
pub(crate) fn is_functions_refused(e: &RedisError) -> bool {
    e.code() == Some("NOPERM")
        || (e.code() == Some("ERR")
            && e.detail().is_some_and(|d| {
                d.starts_with("unknown command") || d.starts_with("unknown subcommand")
            }))
}

/// The script is not in the server's cache.
pub(crate) fn is_noscript(e: &RedisError) -> bool {
    e.code() == Some("NOSCRIPT")
}
