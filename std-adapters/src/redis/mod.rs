//! Redis: core's decisions made atomically inside Redis by Lua scripts, so
//! that many servers share one limit (feature `redis`).
//!
//! - **Same decisions.** The scripts are a port of `ratebound-core`'s
//!   arithmetic (exact integers below 2^53, products through bitwise long
//!   division), checked against the shared trace fixtures field by field.
//! - **One round trip** per decision, even for a policy set of several
//!   limits (all or nothing, naming the binding one).
//! - **Time.** By default the script reads Redis `TIME`, so servers with
//!   skewed clocks agree ([`TimeSource::Redis`]); [`TimeSource::Caller`]
//!   sends the caller's clock instead (tests, replays). Key expiry always
//!   uses Redis's clock; `ttl_margin` covers callers running behind it.
//! - **Keys** are `prefix` + `{tag}` + `:` + name. Every key of one call
//!   shares the tag, so multi-key scripts work on Redis Cluster. Tags are
//!   binary-safe; `%`, `{` and `}` are escaped so a tag can never end early
//!   or collide with another. Every key expires once its limiter is idle.
//! - **Connections**: a [`ConnectionManager`] (reconnects by itself) or a
//!   cluster connection; every call has a timeout.
//! - **Code loaded once.** The Lua code is a Redis Functions library,
//!   loaded when the store connects (on every master of a cluster) and
//!   called with `FCALL` (`FCALL_RO` for peeks); a server that lost it
//!   (restart, `FUNCTION FLUSH`, a new node) gets it again transparently.
//!   Where Functions are missing (Redis < 7) or `FUNCTION LOAD` is refused,
//!   the same code runs as scripts by SHA (`EVALSHA`, reloaded on
//!   `NOSCRIPT`); [`RedisStore::invocation`] says which.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use ratebound_core::policy::{fold, PolicyDecision};
use ratebound_core::wire;
use ratebound_core::{Decision, Gcra, Instant, SlidingCounter, SlidingLog};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{ToRedisArgs, Value};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::AnyLimiter;

mod budget;
pub use budget::{BudgetReply, RawBudgetState, RedisBudget};
mod model;
pub use model::{RedisAdmission, RedisModelLimiter, RedisModelQuotas, WithState};
mod limiter;
pub use limiter::{RedisLimiter, Verdict};
mod scripts;
pub(crate) use scripts::Entry;
pub use scripts::Invocation;
use scripts::CODE;
mod manager;
pub use manager::{
    AnyBudgetHold, AnyBudgetManager, BudgetBackend, RedisBudgetError, RedisBudgetHold,
    RedisBudgetManager,
};

/// What to do when Redis is unreachable, failing or too slow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Admit without counting (availability first).
    Open,
    /// Refuse (`AdmitError::Unavailable`; the layer answers 503).
    #[default]
    Closed,
    /// Decide with an in-memory limiter of the same config, per server
    /// (the seed's memory path): limits hold per replica until Redis is back.
    Local,
}

/// Where a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Redis.
    Redis,
    /// Redis was unavailable: admitted uncounted ([`OnUnavailable::Open`]).
    FailOpen,
    /// Redis was unavailable: decided in memory ([`OnUnavailable::Local`]).
    Local,
}

/// After a failure, calls skip Redis (and its timeout) for this long, then
/// try again (reconnecting).
const RETRY_AFTER_FAILURE: StdDuration = StdDuration::from_millis(500);

/// Skips Redis for a moment after it failed, and logs the transitions
/// (down, back) once each rather than on every call.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    down_until: std::sync::Mutex<Option<std::time::Instant>>,
    down: std::sync::atomic::AtomicBool,
}

impl Breaker {
    pub(crate) fn skipping(&self) -> bool {
        let guard = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        guard.is_some_and(|t| std::time::Instant::now() < t)
    }

    pub(crate) fn mark(&self, ok: bool, err: Option<&RedisLimitError>, what: &str) {
        use std::sync::atomic::Ordering;
        if ok {
            if self.down.swap(false, Ordering::SeqCst) {
                tracing::warn!("redis is back: {what} are shared again");
            }
            *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
        } else {
            if !self.down.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    error = %err.map(ToString::to_string).unwrap_or_default(),
                    "redis unavailable: {what} fall back to the failure policy"
                );
            }
            *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now() + RETRY_AFTER_FAILURE);
        }
    }
}

/// Where the scripts' `now` comes from.
#[derive(Clone)]
pub enum TimeSource {
    /// Redis `TIME`: one clock for every server (default).
    Redis,
    /// The caller's clock, sent with each call.
    Caller(Arc<dyn Clock>),
}

impl std::fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeSource::Redis => "Redis",
            TimeSource::Caller(_) => "Caller",
        })
    }
}

/// How a [`RedisStore`] talks to Redis.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Prepended to every key (default `rb:`).
    pub prefix: String,
    /// The longest call before it fails with [`RedisLimitError::Timeout`] (default 250 ms).
    pub timeout: StdDuration,
    /// Where `now` comes from (default Redis `TIME`).
    pub time: TimeSource,
    /// Extra time before an idle key expires (default 60 s).
    pub ttl_margin: StdDuration,
    /// The longest key tag accepted, in bytes (default 1024).
    pub max_tag_len: usize,
    /// Return each limiter's state with its decision
    /// ([`MemberOutcome::state`]): for tests and replays; off by default,
    /// which keeps replies small.
    pub with_state: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "rb:".into(),
            timeout: StdDuration::from_millis(250),
            time: TimeSource::Redis,
            ttl_margin: StdDuration::from_secs(60),
            max_tag_len: 1024,
            with_state: false,
        }
    }
}

/// Why a Redis call gave no decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisLimitError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No answer within the timeout.
    #[error("redis: no answer within {0:?}")]
    Timeout(StdDuration),
    /// A key tag over `max_tag_len` bytes.
    #[error("key tag is {len} bytes, over the limit of {max}")]
    TagTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A member's cost can never fit (more than its capacity).
    #[error("member {member} ({name}): cost {cost} can never fit (capacity {capacity})")]
    Cost {
        /// Index of the member.
        member: usize,
        /// Its name.
        name: String,
        /// The cost asked.
        cost: u64,
        /// Its capacity.
        capacity: u64,
    },
    /// A call that cannot be made (no members, the same name twice, a
    /// name with a brace).
    #[error("invalid call: {0}")]
    Invalid(&'static str),
    /// The script answered something unexpected.
    #[error("unexpected reply from the script: {0}")]
    Protocol(String),
}

impl RedisLimitError {
    /// True when Redis was unreachable, failed or was too slow (a failure
    /// policy applies), as opposed to a bad request.
    pub fn is_unavailable(&self) -> bool {
        use redis::{ErrorKind, ServerErrorKind};
        match self {
            RedisLimitError::Timeout(_) => true,
            // Only what says "not now": I/O, a dropped or refused connection,
            // a server loading, failing over or busy. Anything else (a
            // script error, WRONGTYPE, OOM, NOPERM, CROSSSLOT) is an answer
            // about this call: falling back, let alone failing open, would
            // hide a misconfiguration.
            RedisLimitError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || matches!(
                        e.kind(),
                        ErrorKind::Server(
                            ServerErrorKind::BusyLoading
                                | ServerErrorKind::TryAgain
                                | ServerErrorKind::ClusterDown
                                | ServerErrorKind::MasterDown
                                | ServerErrorKind::ReadOnly
                        )
                    )
                    || e.code() == Some("BUSY")
            }
            _ => false,
        }
    }
}

/// A limiter as the scripts run it: core's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisSpec {
    /// GCRA.
    Gcra(Gcra),
    /// Sliding log of `slots` entries.
    SlidingLog {
        /// Units per window.
        limit: u64,
        /// Window length (µs).
        window_us: u64,
        /// Entries kept (core's `N`).
        slots: u64,
    },
    /// Sliding counter.
    SlidingCounter(SlidingCounter),
}

impl RedisSpec {
    /// A sliding log like `SlidingLog<N>`.
    pub fn sliding_log<const N: usize>(log: &SlidingLog<N>) -> Self {
        RedisSpec::SlidingLog {
            limit: log.limit(),
            window_us: log.window().as_micros(),
            slots: N as u64,
        }
    }

    fn capacity(&self) -> u64 {
        match self {
            RedisSpec::Gcra(g) => g.capacity(),
            RedisSpec::SlidingLog { limit, .. } => *limit,
            RedisSpec::SlidingCounter(c) => c.limit(),
        }
    }

    fn push_args(&self, cost: u64, out: &mut Vec<String>) {
        match self {
            RedisSpec::Gcra(g) => {
                let [p, a, tau_us, tau_rem] = wire::gcra_args(g);
                out.extend(
                    ["g".to_owned()].into_iter().chain(
                        [cost, g.capacity(), p, a, tau_us, tau_rem]
                            .iter()
                            .map(u64::to_string),
                    ),
                );
            }
            RedisSpec::SlidingLog {
                limit,
                window_us,
                slots,
            } => out.extend(
                ["l".to_owned()].into_iter().chain(
                    [cost, *limit, *window_us, *slots]
                        .iter()
                        .map(u64::to_string),
                ),
            ),
            RedisSpec::SlidingCounter(c) => out.extend(
                ["c".to_owned()].into_iter().chain(
                    [cost, c.limit(), c.window().as_micros()]
                        .iter()
                        .map(u64::to_string),
                ),
            ),
        }
    }
}

impl From<&AnyLimiter> for RedisSpec {
    fn from(l: &AnyLimiter) -> Self {
        match l {
            AnyLimiter::Gcra(g) => RedisSpec::Gcra(*g),
            AnyLimiter::SlidingLog(s) => RedisSpec::sliding_log(s),
            AnyLimiter::SlidingCounter(c) => RedisSpec::SlidingCounter(*c),
        }
    }
}

/// One member of a call: a named limiter and the cost asked of it.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    /// Its name within the tag (the key is `prefix{tag}:name`).
    pub name: &'a str,
    /// The limiter.
    pub spec: &'a RedisSpec,
    /// The cost.
    pub cost: u64,
}

/// One member's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberOutcome {
    /// Its decision.
    pub decision: Decision,
    /// Tokens taken (only for [`RedisStore::take_at_most`]).
    pub taken: u64,
    /// Its state after the call, as core's fields (gcra `[tat, rem]`; log
    /// `[last, at, cost, …]`; counter `[start, prev, curr]`); empty unless
    /// [`RedisOptions::with_state`] is set.
    pub state: Vec<u64>,
}

/// A decision made in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisDecision {
    /// The set's decision (a single limiter: its own), folded as core does.
    pub decision: PolicyDecision,
    /// Each member's.
    pub members: Vec<MemberOutcome>,
    /// The `now` it was made at (Redis `TIME` or the caller's).
    pub now: Instant,
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

#[derive(Clone)]
enum Client {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

impl Client {
    async fn connect(&self, opts: &RedisOptions) -> Result<Conn, RedisLimitError> {
        match self {
            Client::Single(c) => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(opts.timeout))
                    .set_response_timeout(Some(opts.timeout))
                    .set_number_of_retries(1);
                Ok(Conn::Single(
                    within(opts.timeout, c.get_connection_manager_with_config(cfg)).await?,
                ))
            }
            Client::Cluster(c) => Ok(Conn::Cluster(
                within(opts.timeout.saturating_mul(4), c.get_async_connection()).await?,
            )),
        }
    }
}

impl Conn {
    async fn query(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// Load the function library; say how the code will run here. Only a
    /// server that does not know `FUNCTION` (Redis < 7, or the command
    /// renamed away) or refuses it (`NOPERM`) runs scripts; any other error
    /// is returned.
    async fn load_code(&mut self) -> Result<Invocation, RedisLimitError> {
        match self.query(&CODE.load()).await {
            Ok(_) => Ok(Invocation::Functions),
            Err(e) if scripts::is_functions_refused(&e) => {
                tracing::info!(error = %e, "Redis Functions unavailable here: running the Lua code as scripts (EVALSHA)");
                Ok(Invocation::Scripts)
            }
            Err(e) => Err(RedisLimitError::Redis(e)),
        }
    }
}

/// A connection to Redis (or a Redis Cluster) with the scripts. Clones share
/// the connection.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    conn: Arc<std::sync::Mutex<Conn>>,
    /// 0: [`Invocation::Functions`], 1: [`Invocation::Scripts`].
    invocation: Arc<std::sync::atomic::AtomicU8>,
    /// Set when a call found Redis unavailable: the next call reconnects
    /// from scratch (the connection manager alone does not recover from
    /// every failure, e.g. timeouts while Redis restarts).
    broken: Arc<std::sync::atomic::AtomicBool>,
    opts: RedisOptions,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.client, Client::Cluster(_)))
            .field("opts", &self.opts)
            .finish()
    }
}

impl RedisStore {
    /// Connect to one Redis (`redis://127.0.0.1:6379`). The connection
    /// manager reconnects by itself after failures.
    pub async fn connect(url: &str, opts: RedisOptions) -> Result<Self, RedisLimitError> {
        Self::with_client(Client::Single(redis::Client::open(url)?), opts).await
    }

    async fn with_client(client: Client, opts: RedisOptions) -> Result<Self, RedisLimitError> {
        if opts.prefix.contains(['{', '}']) {
            return Err(RedisLimitError::Invalid(
                "the key prefix must not contain { or }",
            ));
        }
        if opts.timeout.is_zero() || opts.ttl_margin > StdDuration::from_secs(366 * 86_400) {
            return Err(RedisLimitError::Invalid(
                "timeout must be above zero and ttl_margin at most 366 days",
            ));
        }
        let mut conn = client.connect(&opts).await?;
        let how = within_limit(opts.timeout, conn.load_code()).await?;
        Ok(RedisStore {
            client,
            conn: Arc::new(std::sync::Mutex::new(conn)),
            invocation: Arc::new(std::sync::atomic::AtomicU8::new(how as u8)),
            broken: Arc::default(),
            opts,
        })
    }

    /// Connect to a Redis Cluster through any of its nodes.
    pub async fn connect_cluster(
        nodes: &[&str],
        opts: RedisOptions,
    ) -> Result<Self, RedisLimitError> {
        let client = redis::cluster::ClusterClient::builder(nodes.iter().map(|s| s.to_string()))
            .connection_timeout(opts.timeout)
            .response_timeout(opts.timeout)
            .retries(2)
            .build()?;
        Self::with_client(Client::Cluster(Box::new(client)), opts).await
    }

    /// The options.
    pub fn options(&self) -> &RedisOptions {
        &self.opts
    }

    /// How the Lua code runs on this server: as a function library, or as
    /// scripts where Functions are unavailable.
    pub fn invocation(&self) -> Invocation {
        match self.invocation.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Invocation::Functions,
            _ => Invocation::Scripts,
        }
    }

    fn set_invocation(&self, how: Invocation) {
        self.invocation
            .store(how as u8, std::sync::atomic::Ordering::Relaxed);
    }

    /// The key of `name` under `tag`: `prefix{tag}:name`, with `%`, `{`, `}`
    /// in the tag escaped.
    pub fn key(&self, tag: &[u8], name: &str) -> Result<Vec<u8>, RedisLimitError> {
        if tag.len() > self.opts.max_tag_len {
            return Err(RedisLimitError::TagTooLong {
                len: tag.len(),
                max: self.opts.max_tag_len,
            });
        }
        if name.contains(['{', '}']) {
            return Err(RedisLimitError::Invalid(
                "a limiter name must not contain { or }",
            ));
        }
        let mut k = Vec::with_capacity(self.opts.prefix.len() + tag.len() + name.len() + 4);
        k.extend_from_slice(self.opts.prefix.as_bytes());
        k.push(b'{');
        if tag.is_empty() {
            // Redis hashes the whole key for an empty `{}`; a bare `%`
            // (which escaping never produces) keeps one slot per call.
            k.push(b'%');
        }
        for &b in tag {
            match b {
                b'%' => k.extend_from_slice(b"%25"),
                b'{' => k.extend_from_slice(b"%7B"),
                b'}' => k.extend_from_slice(b"%7D"),
                _ => k.push(b),
            }
        }
        k.extend_from_slice(b"}:");
        k.extend_from_slice(name.as_bytes());
        Ok(k)
    }

    fn now_arg(&self) -> String {
        match &self.opts.time {
            TimeSource::Redis => String::new(),
            TimeSource::Caller(c) => c.now().as_micros().to_string(),
        }
    }

    /// Call `entry` of the Lua code with a timeout: `FCALL` (loading the
    /// library again if the server lost it) or `EVALSHA` (`EVAL` on
    /// `NOSCRIPT`). `read_only` calls may go to `FCALL_RO`.
    pub(crate) async fn invoke<A: ToRedisArgs>(
        &self,
        entry: Entry,
        read_only: bool,
        keys: &[Vec<u8>],
        args: &[A],
    ) -> Result<Value, RedisLimitError> {
        use std::sync::atomic::Ordering;
        let call = async {
            if self.broken.load(Ordering::SeqCst) {
                // Cancellation-safe: the flag clears only once a new
                // connection is in place (with the code loaded).
                let mut c = self.client.connect(&self.opts).await?;
                self.set_invocation(c.load_code().await?);
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = c;
                self.broken.store(false, Ordering::SeqCst);
            }
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let how = self.invocation();
            let r = conn
                .query(&CODE.call(how, entry, read_only, keys, args))
                .await;
            let r = match (how, r) {
                (Invocation::Functions, Err(e)) if scripts::is_function_missing(&e) => {
                    let how = conn.load_code().await?;
                    self.set_invocation(how);
                    tracing::info!(
                        ?how,
                        "the Redis server had lost ratebound's functions; loaded again"
                    );
                    match how {
                        Invocation::Functions => {
                            conn.query(&CODE.call(how, entry, read_only, keys, args))
                                .await
                        }
                        // A server that lost Functions altogether has no
                        // scripts cached either: send the whole script.
                        Invocation::Scripts => conn.query(&CODE.eval(entry, keys, args)).await,
                    }
                }
                (Invocation::Scripts, Err(e)) if scripts::is_noscript(&e) => {
                    conn.query(&CODE.eval(entry, keys, args)).await
                }
                (_, r) => r,
            };
            Ok::<_, RedisLimitError>(r?)
        };
        // One timeout for the whole call, reconnection included.
        let r = match tokio::time::timeout(self.opts.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(RedisLimitError::Timeout(self.opts.timeout)),
        };
        if r.as_ref().is_err_and(RedisLimitError::is_unavailable) {
            self.broken.store(true, Ordering::SeqCst);
        }
        r
    }

    async fn run(
        &self,
        mode: &str,
        tag: &[u8],
        members: &[Member<'_>],
    ) -> Result<RedisDecision, RedisLimitError> {
        if members.is_empty() {
            return Err(RedisLimitError::Invalid("no members"));
        }
        for (i, m) in members.iter().enumerate() {
            if let RedisSpec::SlidingLog {
                limit,
                window_us,
                slots,
            } = m.spec
            {
                let ok = |v: u64| (1..=ratebound_core::MAX_SAFE_INTEGER).contains(&v);
                if !(ok(*limit) && ok(*window_us) && ok(*slots)) {
                    return Err(RedisLimitError::Invalid(
                        "a sliding log needs limit, window and slots of 1 to 2^53 - 1",
                    ));
                }
            }
            if members[..i].iter().any(|o| o.name == m.name) {
                return Err(RedisLimitError::Invalid("the same member name twice"));
            }
            if m.cost > m.spec.capacity() {
                return Err(RedisLimitError::Cost {
                    member: i,
                    name: m.name.to_owned(),
                    cost: m.cost,
                    capacity: m.spec.capacity(),
                });
            }
        }
        self.run_unchecked(mode, tag, members).await
    }

    /// Check every member at once, all or nothing (one round trip).
    pub async fn check(
        &self,
        tag: &[u8],
        members: &[Member<'_>],
    ) -> Result<RedisDecision, RedisLimitError> {
        self.run("check", tag, members).await
    }

    /// What [`check`](RedisStore::check) would decide, changing nothing.
    pub async fn peek(
        &self,
        tag: &[u8],
        members: &[Member<'_>],
    ) -> Result<RedisDecision, RedisLimitError> {
        self.run("peek", tag, members).await
    }

    /// GCRA only: take as many as available, up to `n` (core's `check_at_most`).
    pub async fn take_at_most(
        &self,
        tag: &[u8],
        name: &str,
        gcra: &Gcra,
        n: u64,
    ) -> Result<MemberOutcome, RedisLimitError> {
        self.gcra_op("at_most", tag, name, gcra, n).await
    }

    /// GCRA only: give back up to `n` tokens (core's `refund`).
    pub async fn refund(
        &self,
        tag: &[u8],
        name: &str,
        gcra: &Gcra,
        n: u64,
    ) -> Result<MemberOutcome, RedisLimitError> {
        self.gcra_op("refund", tag, name, gcra, n).await
    }

    /// `at_most` / `refund`: never errors for size (both cap `n` as core does).
    async fn gcra_op(
        &self,
        mode: &str,
        tag: &[u8],
        name: &str,
        gcra: &Gcra,
        n: u64,
    ) -> Result<MemberOutcome, RedisLimitError> {
        let spec = RedisSpec::Gcra(*gcra);
        let m = [Member {
            name,
            spec: &spec,
            cost: n.min(MAX_ARG),
        }];
        let mut d = self.run_unchecked(mode, tag, &m).await?;
        Ok(d.members.remove(0))
    }

    async fn run_unchecked(
        &self,
        mode: &str,
        tag: &[u8],
        members: &[Member<'_>],
    ) -> Result<RedisDecision, RedisLimitError> {
        let keys = members
            .iter()
            .map(|m| self.key(tag, m.name))
            .collect::<Result<Vec<_>, _>>()?;
        let state = if self.opts.with_state { "1" } else { "0" };
        // The common call, one GCRA checked whose interval is whole
        // microseconds, has a lean entry point of its own.
        if let (
            "check",
            [Member {
                spec: RedisSpec::Gcra(g),
                cost,
                ..
            }],
        ) = (mode, members)
        {
            if let [p, 1, tau_us, _] = wire::gcra_args(g) {
                let args = [
                    self.now_arg(),
                    self.opts.ttl_margin.as_millis().to_string(),
                    state.to_owned(),
                    cost.to_string(),
                    g.capacity().to_string(),
                    p.to_string(),
                    tau_us.to_string(),
                ];
                let reply = self.invoke(Entry::Gcra, false, &keys, &args).await?;
                return parse_reply(reply, members);
            }
        }
        let mut args = vec![
            self.now_arg(),
            self.opts.ttl_margin.as_millis().to_string(),
            mode.to_owned(),
            state.to_owned(),
            members.len().to_string(),
        ];
        for m in members {
            m.spec.push_args(m.cost, &mut args);
        }
        let reply = self
            .invoke(Entry::Limit, mode == "peek", &keys, &args)
            .await?;
        parse_reply(reply, members)
    }
}

/// Costs sent to the scripts are kept below 2^53 (Lua's exact range);
/// larger ones can never fit any limiter anyway.
pub(crate) const MAX_ARG: u64 = ratebound_core::MAX_SAFE_INTEGER;

async fn within_limit<T>(
    t: StdDuration,
    f: impl std::future::Future<Output = Result<T, RedisLimitError>>,
) -> Result<T, RedisLimitError> {
    tokio::time::timeout(t, f)
        .await
        .unwrap_or(Err(RedisLimitError::Timeout(t)))
}

async fn within<T>(
    t: StdDuration,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisLimitError> {
    match tokio::time::timeout(t, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RedisLimitError::Timeout(t)),
    }
}

fn int(v: &Value) -> Result<u64, RedisLimitError> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        Value::Int(i) if *i == -1 => Ok(u64::MAX),
        other => Err(RedisLimitError::Protocol(format!(
            "expected an integer, got {other:?}"
        ))),
    }
}

fn parse_reply(reply: Value, members: &[Member<'_>]) -> Result<RedisDecision, RedisLimitError> {
    let Value::Array(items) = reply else {
        return Err(RedisLimitError::Protocol(format!(
            "expected an array, got {reply:?}"
        )));
    };
    let mut it = items.iter();
    let now = Instant::from_micros(int(it
        .next()
        .ok_or_else(|| RedisLimitError::Protocol("empty reply".into()))?)?);
    // One GCRA checked answers flat: status, remaining, reset, retry [, state].
    let flat = matches!(items.get(1), Some(Value::Int(_)));
    let mut out = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        let nums = if flat && i == 0 {
            let mut v = it.by_ref().map(int).collect::<Result<Vec<_>, _>>()?;
            if v.len() < 4 {
                return Err(RedisLimitError::Protocol("short flat reply".into()));
            }
            v.insert(2, m.spec.capacity()); // limit
            v.insert(5, 0); // taken
            v
        } else {
            let Some(Value::Array(row)) = it.next() else {
                return Err(RedisLimitError::Protocol(format!("no row for member {i}")));
            };
            row.iter().map(int).collect::<Result<Vec<_>, _>>()?
        };
        let [status, remaining, limit, reset, retry, taken, state @ ..] = nums.as_slice() else {
            return Err(RedisLimitError::Protocol(format!(
                "short row for member {i}"
            )));
        };
        if *status == u64::MAX {
            return Err(RedisLimitError::Cost {
                member: i,
                name: m.name.to_owned(),
                cost: m.cost,
                capacity: m.spec.capacity(),
            });
        }
        out.push(MemberOutcome {
            decision: Decision {
                allowed: *status == 1,
                remaining: *remaining,
                limit: *limit,
                reset_at: Instant::from_micros(*reset),
                retry_at: Instant::from_micros(*retry),
            },
            taken: *taken,
            state: state.to_vec(),
        });
    }
    let decision = fold(now, out.iter().map(|m| m.decision).enumerate());
    Ok(RedisDecision {
        decision,
        members: out,
        now,
    })
}
