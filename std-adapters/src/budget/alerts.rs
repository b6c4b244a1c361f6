//! Alert delivery shared by the budget managers (memory and Redis): alerts
//! go to handlers on a dedicated thread, and waits for delivery can be
//! bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use ratebound_core::budget::{Alert, Alerts, BudgetError, Settled};

/// Alert handlers were still running when a bounded wait gave up (the
/// deadline passed or the wait was cancelled). They keep running; nothing is
/// lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{alerts} budget alert(s) still being handled")]
pub struct AlertsPending {
    /// Alerts dispatched whose handlers have not all returned.
    pub alerts: usize,
}

type Handler = Arc<dyn Fn(&Alert) + Send + Sync>;
type Dispatch = mpsc::Sender<(Alert, Vec<Handler>)>;

/// Delivers alerts to handlers on a dedicated thread, so callers never block
/// on (or are broken by) a slow or panicking handler.
/// Alert delivery shared by the budget managers (memory and Redis).
pub(crate) struct AlertHub {
    handlers: RwLock<Vec<Handler>>,
    subscribers: Mutex<Vec<mpsc::Sender<Alert>>>,
    pending: Arc<(Mutex<usize>, Condvar)>,
    notify: Arc<tokio::sync::Notify>,
    in_flight: Arc<AtomicUsize>,
    tx: Mutex<Option<Dispatch>>,
}

impl AlertHub {
    pub(crate) fn on_alert(&self, handler: impl Fn(&Alert) + Send + Sync + 'static) {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(handler));
        self.start();
    }

    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Alert> {
        let (tx, rx) = mpsc::channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// [`wait`](Self::wait), or `Err` with what is still running once
    /// `stop` completes first.
    pub(crate) async fn wait_until(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), AlertsPending> {
        tokio::select! {
            biased;
            () = self.wait() => Ok(()),
            () = stop => match self.in_flight.load(Ordering::Acquire) {
                0 => Ok(()),
                alerts => Err(AlertsPending { alerts }),
            },
        }
    }

    pub(crate) fn wait_blocking(&self) {
        let (lock, cv) = &*self.pending;
        let mut left = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *left > 0 {
            left = cv.wait(left).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub(crate) fn wait_blocking_for(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(), AlertsPending> {
        let (lock, cv) = &*self.pending;
        let left = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (left, _) = cv
            .wait_timeout_while(left, timeout, |left| *left > 0)
            .unwrap_or_else(|e| e.into_inner());
        match *left {
            0 => Ok(()),
            alerts => Err(AlertsPending { alerts }),
        }
    }

    pub(crate) fn new() -> Self {
        AlertHub {
            handlers: RwLock::new(Vec::new()),
            subscribers: Mutex::new(Vec::new()),
            pending: Arc::new((Mutex::new(0usize), Condvar::new())),
            notify: Arc::new(tokio::sync::Notify::new()),
            in_flight: Arc::new(AtomicUsize::new(0)),
            tx: Mutex::new(None),
        }
    }

    /// Start the delivery thread (once, when the first handler registers).
    fn start(&self) {
        let mut tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.is_some() {
            return;
        }
        let (sender, rx) = mpsc::channel::<(Alert, Vec<Handler>)>();
        let (p, n, f) = (
            self.pending.clone(),
            self.notify.clone(),
            self.in_flight.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("ratebound-alerts".into())
            .spawn(move || {
                // Ends when the manager (and with it the sender) is dropped.
                for (alert, handlers) in rx {
                    for h in handlers {
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(&alert)))
                            .is_err()
                        {
                            tracing::error!(?alert, "budget alert handler panicked");
                        }
                    }
                    f.fetch_sub(1, Ordering::AcqRel);
                    let (lock, cv) = &*p;
                    let mut left = lock.lock().unwrap_or_else(|e| e.into_inner());
                    *left = left.saturating_sub(1);
                    cv.notify_all();
                    n.notify_waiters();
                }
            });
        match spawned {
            Ok(_) => *tx = Some(sender),
            Err(e) => {
                tracing::error!(error = %e, "could not start the budget alert thread; handlers will not run")
            }
        }
    }

    /// Core's answer to a settle, in memory or from Redis: the charge, its
    /// alerts published; or, for a reservation the state does not know (the
    /// budget was reset, or its state expired long after the hold lapsed),
    /// nothing charged, as core rules.
    pub(crate) fn settled(&self, r: Result<Settled, BudgetError>) -> Option<Settled> {
        match r {
            Ok(s) => {
                self.publish(&s.alerts);
                Some(s)
            }
            Err(e) => {
                tracing::warn!(error = %e, "settle of an unknown reservation; nothing charged");
                None
            }
        }
    }

    pub(crate) fn publish(&self, alerts: &Alerts) {
        for alert in alerts {
            tracing::info!(kind = ?alert.kind, alert_type = alert.alert_type(), utilization_bp = alert.utilization_bp, "budget alert");
            self.subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|s| s.send(*alert).is_ok());
            let handlers = self
                .handlers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if handlers.is_empty() {
                continue;
            }
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(tx) = tx.as_ref() {
                *self.pending.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                if tx.send((*alert, handlers)).is_err() {
                    *self.pending.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}
