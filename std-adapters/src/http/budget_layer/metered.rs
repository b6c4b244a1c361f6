//! The response body: passed through frame by frame, metered for usage,
//! and the settlement of the call's holds when it ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use ratebound_core::budget::llm::{Ending, Estimate, Price};
use ratebound_core::budget::Usage;

use super::{SettleEvent, SettleHook};
use crate::budget::ScopedHold;
use crate::clock::Clock;
use crate::http::usage::UsageScan;

/// A call's holds and what settling them needs.
pub(super) struct Settle<C: Clock + Clone> {
    pub(super) hold: Option<ScopedHold<C>>,
    pub(super) estimate: Estimate,
    pub(super) price: Price,
    pub(super) reserved: Usage,
    pub(super) user: String,
    pub(super) model: String,
    pub(super) on_settle: Option<SettleHook>,
}

impl<C: Clock + Clone> Settle<C> {
    pub(super) fn release(mut self) {
        self.hold = None; // dropping the hold releases it
    }

    /// Settle: at once for budgets in memory; in the background when one is
    /// in Redis (a body's poll cannot wait for the store).
    pub(super) fn finish(mut self, ending: Ending) {
        let Some(hold) = self.hold.take() else { return };
        let charged = ending.charge(&self.estimate, &self.price);
        let mut event = SettleEvent {
            user: std::mem::take(&mut self.user),
            model: std::mem::take(&mut self.model),
            reserved: self.reserved,
            ending,
            charged,
            recorded: true,
        };
        let hook = self.on_settle.take();
        let hold = match hold.settle_in_memory(charged) {
            Ok(_) => {
                if let Some(h) = hook {
                    h(&event);
                }
                return;
            }
            Err(hold) => hold,
        };
        let done = async move {
            if let Err(e) = hold.settle(charged).await {
                tracing::warn!(error = %e, user = %event.user, model = %event.model, "a budget settlement was not recorded");
                event.recorded = false;
            }
            if let Some(h) = hook {
                h(&event);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(done);
            }
            Err(_) => tracing::warn!(
                "no tokio runtime to settle a Redis budget on; its holds lapse after their TTL"
            ),
        }
    }
}

impl<C: Clock + Clone> Drop for Settle<C> {
    fn drop(&mut self) {
        if self.hold.is_some() {
            let s = Settle {
                hold: self.hold.take(),
                estimate: self.estimate,
                price: self.price,
                reserved: self.reserved,
                user: std::mem::take(&mut self.user),
                model: std::mem::take(&mut self.model),
                on_settle: self.on_settle.take(),
            };
            s.finish(Ending::Unreported {
                input: None,
                observed_output: 0,
            });
        }
    }
}

/// The response body: the upstream's frames passed through as they come,
/// metered for usage; or a refusal written by the layer.
pub struct MeteredBody<B, C: Clock + Clone>(pub(super) Metered<B, C>);

pub(super) enum Metered<B, C: Clock + Clone> {
    /// Passed through without metering.
    Pass(B),
    /// Metered; settles when it ends or is dropped.
    Scan {
        inner: B,
        scan: UsageScan,
        settle: Option<Box<Settle<C>>>,
    },
    /// Written by the layer.
    Full(Option<Bytes>),
}

impl<B, C: Clock + Clone> MeteredBody<B, C> {
    pub(super) fn pass(b: B) -> Self {
        MeteredBody(Metered::Pass(b))
    }
}

impl<B, C> Body for MeteredBody<B, C>
where
    B: Body<Data = Bytes> + Unpin,
    C: Clock + Clone,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.0 {
            Metered::Pass(b) => Pin::new(b).poll_frame(cx),
            Metered::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            Metered::Scan {
                inner,
                scan,
                settle,
            } => {
                let polled = Pin::new(inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(d) = f.data_ref() {
                            scan.feed(d);
                        }
                    }
                    Poll::Ready(None) => {
                        scan.finish();
                        if let Some(s) = settle.take() {
                            let ending = scan.ending(&s.estimate);
                            s.finish(ending);
                        }
                    }
                    Poll::Ready(Some(Err(_))) | Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Metered::Pass(b) => b.is_end_stream(),
            Metered::Full(b) => b.is_none(),
            // Polled to its end, so that the end is seen and settled.
            Metered::Scan { settle, .. } => settle.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Metered::Pass(b) | Metered::Scan { inner: b, .. } => b.size_hint(),
            Metered::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

impl<B, C: Clock + Clone> Drop for MeteredBody<B, C> {
    fn drop(&mut self) {
        if let Metered::Scan { scan, settle, .. } = &mut self.0 {
            if let Some(s) = settle.take() {
                // Dropped unsettled: after its last byte when the server
                // stops at a known length, or before its end (the client
                // went away, the upstream's body failed). Either way the
                // usage seen decides.
                scan.finish();
                let ending = scan.ending(&s.estimate);
                s.finish(ending);
            }
        }
    }
}
