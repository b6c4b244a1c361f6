//! Reloading gateway.toml while the gateway runs (on `SIGHUP` and on
//! `POST /admin/reload`): the API keys, the per-IP limits and their
//! overrides, and the budgets change at once, every count and every
//! budget's usage kept; a file that does not parse,
//! does not validate, or changes a setting that needs a restart is refused
//! with its error, and nothing changes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use ratebound_core::CarryOver;
use ratebound_std::budget::ScopedBudgets;
use ratebound_std::clock::SystemClock;
use ratebound_std::http::rate_limit::PeerIp;
use ratebound_std::keyed::AnyKeyedLimiter;
use ratebound_std::limiter::LimitSet;

use crate::config::{Config, Key, PerIp};

/// The API keys, read by every request, replaced whole by a reload.
pub(crate) type Keys = Arc<RwLock<BTreeMap<String, Key>>>;

/// What a reload can change in the running gateway.
pub(crate) struct Live {
    pub(crate) keys: Keys,
    /// The per-IP limits and how the layer keys them.
    pub(crate) per_ip: Option<(Arc<AnyKeyedLimiter<SystemClock>>, PeerIp)>,
    /// The budgets (their limits change; their usage is kept).
    pub(crate) budgets: Arc<ScopedBudgets<SystemClock>>,
}

/// Settings a reload may change; any other difference needs a restart.
const LIVE: &[&str] = &[
    "keys",
    "budgets",
    "per_ip.per_second",
    "per_ip.per_minute",
    "per_ip.overrides",
];

pub(crate) struct Reloader {
    path: Option<String>,
    live: Live,
    /// The file as last applied, and the overridden per-IP keys it set.
    applied: Mutex<(toml::Table, Vec<Vec<u8>>)>,
}

impl Reloader {
    /// A reloader for the gateway started from `text` (read from `path`),
    /// with its per-IP overrides applied.
    pub(crate) fn new(path: Option<String>, text: &str, live: Live) -> Result<Self, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let cfg: Config = toml::from_str(text).map_err(|e| format!("{e}"))?;
        let cfg = &cfg;
        let reloader = Reloader {
            path,
            live,
            applied: Mutex::new((toml::Table::new(), Vec::new())),
        };
        let overrides = reloader.check(cfg)?;
        let mut applied = reloader.applied.lock().unwrap_or_else(|p| p.into_inner());
        reloader
            .apply(cfg, overrides, &mut applied.1)
            .map_err(Step::message)?;
        applied.0 = table;
        drop(applied);
        Ok(reloader)
    }

    /// Read the file again and apply it, or change nothing and say why.
    pub(crate) fn reload(&self) -> Result<String, ReloadError> {
        self.reload_checked().map_err(|e| match e {
            Step::Check(e) => ReloadError::Refused(e),
            Step::Apply(e) => ReloadError::PartlyApplied(e),
        })
    }

    fn reload_checked(&self) -> Result<String, Step> {
        let path = self.path.as_deref().ok_or(Step::Check(
            "no --config file to reload (started on the built-in config)".into(),
        ))?;
        // One reload at a time, reading the file under the lock: the last
        // reload asked for applies the newest file.
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let refused = |e: String| Step::Check(format!("{path}: {e}"));
        let text = std::fs::read_to_string(path).map_err(|e| refused(e.to_string()))?;
        let table: toml::Table = text.parse().map_err(|e| refused(format!("{e}")))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| refused(e.to_string()))?;
        let restart = needs_restart(&applied.0, &table);
        if !restart.is_empty() {
            return Err(refused(format!(
                "{} changed; only {} change without a restart",
                restart.join(", "),
                LIVE.join(", ")
            )));
        }
        let overrides = self.check(&cfg).map_err(refused)?;
        self.apply(&cfg, overrides, &mut applied.1)
            .map_err(|s| s.map(|e| format!("{path}: {e}")))?;
        applied.0 = table;
        Ok(format!(
            "reloaded {path}: {} API keys, {} budget scopes{}",
            cfg.keys.len(),
            usize::from(cfg.budgets.per_key.is_some())
                + usize::from(cfg.budgets.per_user.is_some())
                + cfg.budgets.per_group.len()
                + cfg.budgets.per_model.len(),
            match &cfg.per_ip {
                Some(p) => format!(
                    ", per-IP limits {}, {} overridden",
                    describe(p),
                    p.overrides.len()
                ),
                None => String::new(),
            }
        ))
    }

    /// Validate `cfg`'s live settings against the running limits: the new
    /// per-IP limits and each override must keep the states they will read.
    /// Returns the overrides as keys and limits.
    fn check(&self, cfg: &Config) -> Result<PerIpChange, String> {
        self.live
            .budgets
            .check_reconfigure(&cfg.budgets)
            .map_err(|e| format!("[budgets]: {e}"))?;
        let (Some((limits, peer)), Some(p)) = (&self.live.per_ip, &cfg.per_ip) else {
            return Ok(None);
        };
        let set = p.limits().map_err(|e| format!("[per_ip]: {e}"))?;
        set.carries_over_from(&limits.limits())
            .map_err(|e| format!("[per_ip]: {e}"))?;
        let mut overrides: Vec<(Vec<u8>, LimitSet)> = Vec::new();
        let mut named: Vec<&str> = Vec::new();
        for (ip, o) in &p.overrides {
            let addr: IpAddr = ip
                .parse()
                .map_err(|e| format!("[per_ip.overrides] {ip:?}: {e}"))?;
            let own = o
                .limits()
                .and_then(|l| {
                    l.carries_over_from(&set)?;
                    set.carries_over_from(&l)?;
                    Ok(l)
                })
                .map_err(|e| format!("[per_ip.overrides] {ip:?}: {e}"))?;
            let key = peer.key_of(addr).as_bytes().to_vec();
            if let Some(i) = overrides.iter().position(|(k, _)| *k == key) {
                return Err(format!(
                    "[per_ip.overrides] {:?} and {ip:?} are the same client (one address, or one IPv6 /64)",
                    named[i]
                ));
            }
            overrides.push((key, own));
            named.push(ip);
        }
        Ok(Some((set, overrides)))
    }

    /// Apply what [`check`](Self::check) accepted; `keyed` holds the
    /// overridden keys, replaced by the new ones. The per-IP limits go
    /// first: refused (`check` vetted them against the running ones, but
    /// this replica's share is computed here), they change nothing. The
    /// budgets (checked) follow; each overridden key keeps an override
    /// throughout (replaced, then the stale ones removed). A step refused
    /// after another was applied says what was.
    fn apply(
        &self,
        cfg: &Config,
        change: PerIpChange,
        keyed: &mut Vec<Vec<u8>>,
    ) -> Result<(), Step> {
        let per_ip = match (&self.live.per_ip, change) {
            (Some((limits, _)), Some((set, overrides))) => {
                limits
                    .reconfigure(set)
                    .map_err(|e| Step::Check(format!("[per_ip]: {e}")))?;
                Some((limits, overrides))
            }
            _ => None,
        };
        // Checked by `check` under the same lock (so not refused here).
        self.live
            .budgets
            .reconfigure(cfg.budgets.clone())
            .map_err(|e| match per_ip {
                Some(_) => Step::Apply(format!("[budgets]: {e} (the per-IP limits were applied)")),
                None => Step::Check(format!("[budgets]: {e}")),
            })?;
        if let Some((limits, overrides)) = per_ip {
            let mut set_now = Vec::new();
            for (key, own) in overrides {
                if let Err(e) = limits.set_override(&key, own) {
                    // The limits changed; the overrides set so far stay.
                    keyed.extend(set_now);
                    return Err(Step::Apply(format!(
                        "[per_ip.overrides]: {e} (the limits, the budgets and earlier overrides were applied)"
                    )));
                }
                set_now.push(key);
            }
            for stale in keyed.iter().filter(|k| !set_now.contains(k)) {
                limits.remove_override(stale);
            }
            *keyed = set_now;
        }
        *self.live.keys.write().unwrap_or_else(|p| p.into_inner()) = cfg.keys.clone();
        Ok(())
    }
}

/// Why a reload did not apply in full.
#[derive(Debug)]
pub(crate) enum ReloadError {
    /// Refused before anything changed (the file unreadable or invalid, a
    /// setting that needs a restart, limits that cannot carry the states).
    Refused(String),
    /// Refused part way: what the message names was applied.
    PartlyApplied(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Refused(e) => write!(f, "reload refused, nothing changed: {e}"),
            ReloadError::PartlyApplied(e) => write!(f, "reload partly applied: {e}"),
        }
    }
}

/// Where a reload stopped: before anything changed, or after a step was
/// applied.
enum Step {
    Check(String),
    Apply(String),
}

impl Step {
    fn map(self, f: impl FnOnce(String) -> String) -> Step {
        match self {
            Step::Check(e) => Step::Check(f(e)),
            Step::Apply(e) => Step::Apply(f(e)),
        }
    }

    fn message(self) -> String {
        match self {
            Step::Check(e) | Step::Apply(e) => e,
        }
    }
}

/// The new per-IP limits and the overrides, as keys and limits.
type PerIpChange = Option<(LimitSet, Vec<(Vec<u8>, LimitSet)>)>;

/// "20/s and 600/min".
fn describe(p: &PerIp) -> String {
    let parts: Vec<String> = [(p.per_second, "s"), (p.per_minute, "min")]
        .into_iter()
        .filter_map(|(n, unit)| n.map(|n| format!("{n}/{unit}")))
        .collect();
    parts.join(" and ")
}

/// The settings outside [`LIVE`] that differ between `old` and `new`.
fn needs_restart(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let strip = |t: &toml::Table| {
        let mut t = t.clone();
        t.remove("keys");
        t.remove("budgets");
        if let Some(toml::Value::Table(p)) = t.get_mut("per_ip") {
            for k in ["per_second", "per_minute", "overrides"] {
                p.remove(k);
            }
        }
        t
    };
    let (old, new) = (strip(old), strip(new));
    let mut changed: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

/// Reload on every `SIGHUP`, logging the outcome.
pub(crate) fn on_sighup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match reloader.reload() {
                Ok(done) => tracing::info!("{done}"),
                Err(e) => tracing::error!("{e}"),
            }
        }
    });
    Ok(())
}
