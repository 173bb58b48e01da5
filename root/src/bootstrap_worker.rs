//! Start-up chores every replica runs until they succeed: make sure a signing key is committed
//! (the first replica to find none generates one; a compare-and-set command keeps the first
//! key committed) and load it; create the default organization and admin once.

use std::time::Duration;

use tokio::sync::watch;

use crate::api::Api;
use crate::state::{Applied, RootCommand, DEFAULT_ADMIN};

pub async fn run(api: Api, admin_password: String, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match once(&api, &admin_password).await {
            Ok(()) => return,
            Err(e) => tracing::info!("bootstrap not done yet, retrying: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn once(api: &Api, admin_password: &str) -> Result<(), String> {
    let existing = api.replica.read_linearizable(|s| s.signing_key.clone()).await.map_err(|e| e.to_string())?;
    let pem = match existing {
        Some(pem) => pem,
        None => {
            let generated = tokio::task::spawn_blocking(crate::auth::generate_private_pem)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            match api.replica.write(RootCommand::SetSigningKeyIfAbsent { private_pem: generated }).await {
                Ok(Ok(Applied::SigningKey(pem))) => {
                    tracing::info!("signing key committed");
                    pem
                }
                other => return Err(format!("committing the signing key: {other:?}")),
            }
        }
    };
    api.install_key(&pem).map_err(|e| e.to_string())?;

    let bootstrapped = api.replica.read_linearizable(|s| s.bootstrapped).await.map_err(|e| e.to_string())?;
    if !bootstrapped {
        let iterations = api.settings.password_hash_iterations;
        let password = admin_password.to_owned();
        let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password, iterations))
            .await
            .map_err(|e| e.to_string())?;
        let command = RootCommand::Bootstrap {
            org_id: crate::ids::object_id(),
            user_id: crate::ids::object_id(),
            password_hash: hash,
            at_ms: crate::ids::now_ms(),
        };
        match api.replica.write(command).await {
            Ok(Ok(Applied::Changed(1))) => tracing::info!("created organization root and user {DEFAULT_ADMIN}"),
            Ok(Ok(_)) => {}
            other => return Err(format!("creating the default admin: {other:?}")),
        }
    }
    let stored = api.replica.read_linearizable(|s| s.users.get(DEFAULT_ADMIN).map(|u| u.password.clone())).await.map_err(|e| e.to_string())?;
    if let Some(stored) = stored {
        if crate::api::auth::verify_in_background(crate::config::DEFAULT_ADMIN_PASSWORD.to_owned(), stored).await {
            tracing::warn!("user {DEFAULT_ADMIN} still has the default password; change it (POST /api/user/{DEFAULT_ADMIN}) or set admin_password before the first start");
        }
    }
    Ok(())
}
