//! For unit tests that drive a worker's step against the in-process simulator: a simulator
//! whose minute lasts `window`, the daemon's settings scaled the same way, a fresh database,
//! a client and the budgets.

use std::time::Duration;

use crate::config::Settings;
use crate::outbound::limits::Budgets;
use crate::sim::{SimConfig, SimHandle};
use crate::spoki::SpokiClient;
use crate::store::Store;

pub(crate) struct SimRig {
    pub dir: tempfile::TempDir,
    pub sim: SimHandle,
    pub settings: Settings,
    pub store: Store,
    pub client: SpokiClient,
    pub budgets: Budgets,
}

/// `tweak` adjusts the settings before the budgets are made from them.
pub(crate) async fn sim_rig(window: Duration, tweak: impl FnOnce(&mut Settings)) -> SimRig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sim = crate::sim::start(
        listener,
        SimConfig {
            window,
            ..SimConfig::default()
        },
    )
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("dir");
    let mut settings =
        crate::cli::demo::scaled_settings(&sim.base_url(), "sim-api-key", dir.path(), window)
            .expect("settings");
    tweak(&mut settings);
    let store = Store::open(&dir.path().join("t.db")).await.expect("store");
    let key = settings.spoki.api_key.clone().expect("key");
    let client = SpokiClient::new(
        settings.spoki.base_url.clone(),
        key,
        Duration::from_secs(30),
    )
    .expect("client");
    let budgets = Budgets::from_settings(&settings);
    SimRig {
        dir,
        sim,
        settings,
        store,
        client,
        budgets,
    }
}
