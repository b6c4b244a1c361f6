//! The connection: connecting (now or in the background), the call with
//! its timeout and deadline, and reloading lost code.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{ToRedisArgs, Value};

use super::keys;
use super::options::{RedisOptions, TimeSource};
use super::scripts::{self, Entry, Invocation, CODE};
use super::server_clock::ServerClock;
use super::StoreError;

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
    async fn connect(&self, timeout: StdDuration) -> Result<Conn, StoreError> {
        match self {
            Client::Single(c) => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                Ok(Conn::Single(
                    c.get_connection_manager_with_config(cfg).await?,
                ))
            }
            Client::Cluster(c) => Ok(Conn::Cluster(c.get_async_connection().await?)),
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
    async fn load_code(&mut self) -> Result<Invocation, StoreError> {
        match self.query(&CODE.load()).await {
            Ok(_) => Ok(Invocation::Functions),
            Err(e) if scripts::is_functions_refused(&e) => {
                tracing::info!(error = %e, "Redis Functions unavailable here: running the Lua code as scripts (EVALSHA)");
                Ok(Invocation::Scripts)
            }
            Err(e) => Err(StoreError::Redis(e)),
        }
    }
}

/// One connection of the pool: `None` until connected, and again after a
/// call found Redis unavailable (the next call reconnects from scratch: the
/// connection manager alone does not recover from every failure, e.g. a
/// server paused past the timeout).
#[derive(Default)]
struct Slot {
    /// The connection and its generation (so that a call failing on an old
    /// connection never throws away a newer one).
    conn: Mutex<Option<(u64, Conn)>>,
    generation: AtomicU64,
    /// One reconnection at a time per slot; the others wait for it.
    connecting: tokio::sync::Mutex<()>,
}

struct Inner {
    client: Client,
    opts: RedisOptions,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    /// 0: [`Invocation::Functions`], 1: [`Invocation::Scripts`].
    invocation: AtomicU8,
    clock: ServerClock,
    /// Per domain (`limits`, `budgets`, `model limits`): whether the store
    /// is down, as that domain's fail-overs on it last found it. Shared by
    /// them, so an outage is counted and logged once per store, not once
    /// per limiter.
    down: Mutex<Vec<(&'static str, Arc<AtomicBool>)>>,
}

/// A connection to Redis (or a Redis Cluster) with the scripts. Clones share
/// the connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &matches!(self.inner.client, Client::Cluster(_)))
            .field("opts", &self.inner.opts)
            .finish()
    }
}

/// Whether a call changes counts if it arrives late (see [`RedisStore::invoke`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Late {
    /// An admission: refused by the script once its deadline has passed,
    /// so a call the caller gave up on charges nothing.
    Refuse,
    /// A settle, record, release or read: applied whenever it arrives
    /// (dropping it would lose a count the caller already paid for).
    Apply,
}

impl RedisStore {
    /// Whether this store is down for `domain`, shared by every fail-over
    /// of that domain on it (and on its clones).
    pub(crate) fn down_flag(&self, domain: &'static str) -> Arc<AtomicBool> {
        let mut down = self.inner.down.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, flag)) = down.iter().find(|(d, _)| *d == domain) {
            return Arc::clone(flag);
        }
        let flag = Arc::new(AtomicBool::new(false));
        down.push((domain, Arc::clone(&flag)));
        flag
    }

    /// Connect to one Redis (`redis://127.0.0.1:6379`) now: fails when it
    /// cannot be reached within the timeout. See [`open`](Self::open) to
    /// start without it.
    pub async fn connect(url: &str, opts: RedisOptions) -> Result<Self, StoreError> {
        let store = Self::open(url, opts)?;
        store.ready().await?;
        Ok(store)
    }

    /// Connect to a Redis Cluster through any of its nodes, now.
    pub async fn connect_cluster(nodes: &[&str], opts: RedisOptions) -> Result<Self, StoreError> {
        let store = Self::open_cluster(nodes, opts)?;
        store.ready().await?;
        Ok(store)
    }

    /// A store for one Redis that connects on first use (and again after
    /// any failure): it can be created while Redis is down, and calls fail
    /// as unavailable until Redis is reachable. Only the URL and options
    /// are checked here.
    pub fn open(url: &str, opts: RedisOptions) -> Result<Self, StoreError> {
        Self::with_client(Client::Single(redis::Client::open(url)?), opts)
    }

    /// [`open`](Self::open) for a Redis Cluster.
    pub fn open_cluster(nodes: &[&str], opts: RedisOptions) -> Result<Self, StoreError> {
        let client = redis::cluster::ClusterClient::builder(nodes.iter().map(|s| s.to_string()))
            .connection_timeout(opts.timeout)
            .response_timeout(opts.timeout)
            .retries(2)
            .build()?;
        Self::with_client(Client::Cluster(Box::new(client)), opts)
    }

    fn with_client(client: Client, opts: RedisOptions) -> Result<Self, StoreError> {
        if opts.prefix.contains(['{', '}']) {
            return Err(StoreError::Invalid(
                "the key prefix must not contain { or }",
            ));
        }
        if opts.timeout.is_zero()
            || opts.timeout > StdDuration::from_secs(3600)
            || opts.ttl_margin > StdDuration::from_secs(366 * 86_400)
        {
            return Err(StoreError::Invalid(
                "timeout must be above zero and at most an hour, ttl_margin at most 366 days",
            ));
        }
        if !(1..=64).contains(&opts.connections) {
            return Err(StoreError::Invalid("connections must be 1 to 64"));
        }
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                slots: (0..opts.connections).map(|_| Slot::default()).collect(),
                opts,
                next: AtomicUsize::new(0),
                invocation: AtomicU8::new(0),
                clock: ServerClock::new(),
                down: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Connect every connection now (within four timeouts each: a cluster
    /// connects to every master).
    pub async fn ready(&self) -> Result<(), StoreError> {
        let t = self.inner.opts.timeout.saturating_mul(4);
        for slot in self.inner.slots.iter() {
            tokio::time::timeout(t, self.conn(slot))
                .await
                .unwrap_or(Err(StoreError::Timeout(t)))?;
        }
        Ok(())
    }

    /// Keep trying to connect in the background (every `retry` until it
    /// works, or until every clone of the store is dropped), so that the
    /// first calls after Redis comes up find a connection ready. Needs a
    /// tokio runtime; without one it does nothing and calls connect as
    /// they come.
    pub fn connect_in_background(&self, retry: StdDuration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if (RedisStore { inner }).ready().await.is_ok() {
                    tracing::info!("connected to redis");
                    return;
                }
                tokio::time::sleep(retry).await;
            }
        });
    }

    /// The options.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.opts
    }

    /// How the Lua code runs on this server: as a function library, or as
    /// scripts where Functions are unavailable.
    pub fn invocation(&self) -> Invocation {
        match self.inner.invocation.load(Ordering::Relaxed) {
            0 => Invocation::Functions,
            _ => Invocation::Scripts,
        }
    }

    fn set_invocation(&self, how: Invocation) {
        self.inner.invocation.store(how as u8, Ordering::Relaxed);
    }

    /// The key of `name` under `tag`: `prefix{tag}:name`, with `%`, `{`, `}`
    /// in the tag escaped.
    pub fn key(&self, tag: &[u8], name: &str) -> Result<Vec<u8>, StoreError> {
        keys::key(
            &self.inner.opts.prefix,
            self.inner.opts.max_tag_len,
            tag,
            name,
        )
    }

    /// The slot's connection, connecting (and loading the code, and
    /// learning Redis's clock) when it has none. Cancellation-safe: a slot
    /// gets a connection only once it is complete.
    async fn conn(&self, slot: &Slot) -> Result<(u64, Conn), StoreError> {
        if let Some(c) = slot.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c);
        }
        let _one = slot.connecting.lock().await;
        if let Some(c) = slot.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(c); // another call connected meanwhile
        }
        let mut c = self.inner.client.connect(self.inner.opts.timeout).await?;
        self.set_invocation(c.load_code().await?);
        self.sync_clock(&mut c).await?;
        let generation = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *slot.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation, c.clone()));
        Ok((generation, c))
    }

    /// Reads Redis `TIME` to learn its clock.
    async fn sync_clock(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let reply = conn.query(&redis::cmd("TIME")).await?;
        self.inner.clock.record(&reply, std::time::Instant::now())
    }

    /// The `now` argument of every script: `[caller µs][@deadline µs]`. An
    /// empty time part means Redis `TIME`; a deadline (Redis time) makes
    /// the script refuse, changing nothing, once it has passed.
    fn now_arg(&self, deadline: Option<u64>) -> String {
        let mut s = match &self.inner.opts.time {
            TimeSource::Redis => String::new(),
            TimeSource::Caller(c) => c.now().as_micros().to_string(),
        };
        if let Some(d) = deadline {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// Call `entry` of the Lua code with a timeout: `FCALL` (loading the
    /// library again if the server lost it) or `EVALSHA` (`EVAL` on
    /// `NOSCRIPT`). `read_only` calls may go to `FCALL_RO`. The store adds
    /// the `now` argument before `args`; with [`Late::Refuse`] it carries
    /// the deadline after which the script changes nothing.
    pub(crate) async fn invoke<A: ToRedisArgs>(
        &self,
        entry: Entry,
        read_only: bool,
        late: Late,
        keys: &[Vec<u8>],
        args: &[A],
    ) -> Result<Value, StoreError> {
        let started = std::time::Instant::now();
        let timeout = self.inner.opts.timeout;
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.slots.len();
        let slot = &self.inner.slots[i];
        let used = std::sync::atomic::AtomicU64::new(0);
        let call = async {
            let (generation, mut conn) = self.conn(slot).await?;
            used.store(generation, Ordering::Relaxed);
            if late == Late::Refuse {
                if let Some(_one) = self.inner.clock.claim_sync(started) {
                    self.sync_clock(&mut conn).await?;
                }
            }
            let deadline =
                (late == Late::Refuse).then(|| self.inner.clock.deadline(started, timeout));
            let now = self.now_arg(deadline);
            let how = self.invocation();
            let r = conn
                .query(&CODE.call(how, entry, read_only, keys, &now, args))
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
                            conn.query(&CODE.call(how, entry, read_only, keys, &now, args))
                                .await
                        }
                        // A server that lost Functions altogether has no
                        // scripts cached either: send the whole script.
                        Invocation::Scripts => {
                            conn.query(&CODE.eval(entry, keys, &now, args)).await
                        }
                    }
                }
                (Invocation::Scripts, Err(e)) if scripts::is_noscript(&e) => {
                    conn.query(&CODE.eval(entry, keys, &now, args)).await
                }
                (_, r) => r,
            };
            r.map_err(StoreError::from)
        };
        // One timeout for the whole call, reconnection included.
        let r = match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(timeout)),
        };
        crate::telemetry::store_call(entry.lua_name(), started.elapsed().as_secs_f64());
        // A connection that failed (or went silent) is rebuilt by the next
        // call, unless a newer one already replaced it; an answer over a
        // working connection (LATE, BUSY) keeps it.
        if r.as_ref().is_err_and(StoreError::breaks_connection) {
            let mut c = slot.conn.lock().unwrap_or_else(|p| p.into_inner());
            let used = used.load(Ordering::Relaxed);
            if used != 0 && c.as_ref().is_some_and(|(g, _)| *g == used) {
                *c = None;
            }
        }
        r
    }
}
