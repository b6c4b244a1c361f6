//! Which models the gateway serves: the configured ones, or any model up to
//! a per-key cap.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use ratebound_std::http::budget_layer::KeyId;
use ratebound_std::http::layer::{LimitRefusal, Model};
use ratebound_std::model_limit::MAX_NAME_LEN;

use super::config::Config;
use super::handlers::json_error;

/// Only the models the config knows are served: `allowed_models` when
/// given, else every model with a limit, a price or a budget of its own. A
/// key cannot create counts (and fill the store) with made-up names.
/// `allowed_models = ["*"]` serves any model, at most `max_models_per_key`
/// different ones per key (returned, for [`cap_models`]).
pub(crate) fn allowed_models(
    cfg: &mut Config,
) -> Result<Option<Arc<ModelCap>>, Box<dyn std::error::Error>> {
    let limits = &mut cfg.model_limits;
    if limits.allowed_models == ["*"] {
        let max = cfg
            .max_models_per_key
            .filter(|&n| n > 0)
            .ok_or("allowed_models = [\"*\"] needs max_models_per_key (at least 1): the most models one key may use")?;
        limits.allowed_models.clear(); // the limiter serves any model; the cap bounds them
        return Ok(Some(Arc::new(ModelCap {
            max,
            seen: std::sync::Mutex::new(std::collections::HashMap::new()),
        })));
    }
    if limits.allowed_models.is_empty() {
        let known: std::collections::BTreeSet<&String> = limits
            .models
            .keys()
            .chain(cfg.prices.keys())
            .chain(cfg.budgets.per_model.keys())
            .collect();
        limits.allowed_models = known.into_iter().cloned().collect();
    }
    if limits.allowed_models.is_empty() {
        return Err("no model would be served: list allowed_models, or give models limits, prices or budgets".into());
    }
    Ok(None)
}

/// The models each key has used, under `allowed_models = ["*"]`.
pub(crate) struct ModelCap {
    max: usize,
    seen: std::sync::Mutex<std::collections::HashMap<String, std::collections::BTreeSet<String>>>,
}

/// Refuse a key's model beyond its first `max` different ones (400; a
/// budget outside releases its holds). Counted in this replica.
pub(crate) async fn cap_models(
    State(cap): State<Option<Arc<ModelCap>>>,
    req: Request,
    next: Next,
) -> Response {
    let (Some(cap), Some(KeyId(key)), Some(Model(model))) = (
        cap,
        req.extensions().get::<KeyId>().cloned(),
        req.extensions().get::<Model>().cloned(),
    ) else {
        return next.run(req).await;
    };
    let refuse = |message: String, code: &str| {
        let mut res = json_error(
            StatusCode::BAD_REQUEST,
            &message,
            "invalid_request_error",
            code,
        );
        res.extensions_mut().insert(LimitRefusal);
        res
    };
    if model.len() > MAX_NAME_LEN {
        return refuse(
            format!("model names are at most {MAX_NAME_LEN} bytes"),
            "invalid_model",
        );
    }
    // A slot is taken before the call (so concurrent calls cannot pass the
    // cap) and kept only if the call was served.
    let added = {
        let mut seen = cap.seen.lock().unwrap_or_else(|e| e.into_inner());
        let models = seen.entry(key.clone()).or_default();
        if models.contains(&model) {
            false
        } else if models.len() < cap.max {
            models.insert(model.clone());
            true
        } else {
            return refuse(
                format!(
                    "this key has used its {} models; {model:?} would be one more",
                    cap.max
                ),
                "too_many_models",
            );
        }
    };
    let res = next.run(req).await;
    let served = res.status().is_success() && res.extensions().get::<LimitRefusal>().is_none();
    if added && !served {
        let mut seen = cap.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(models) = seen.get_mut(&key) {
            models.remove(&model);
        }
    }
    res
}
