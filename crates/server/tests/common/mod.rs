//! What the in-process multi-core tests (`batching.rs`, `wakeups.rs`) share.

use std::rc::Rc;
use std::sync::Arc;

use rampart_server::config::Config;
use rampart_server::mesh;
use rampart_server::runtime::Core;
use rampart_server::shard::Shard;
use rampart_server::worker::{Process, Worker};
use rampart_store::StoreConfig;

/// One core's worker with a 1 MiB shard and its clock at `now`, serving the shard to its
/// peers, once every core is ready.
pub fn start_core(core: Core, process: Arc<Process>, now: u64) -> Rc<Worker> {
    let Core {
        id,
        cores,
        mesh,
        barrier,
    } = core;
    let store = StoreConfig {
        max_bytes: 1 << 20,
        evict: true,
        cas_start: id as u64 + 1,
        cas_stride: cores as u64,
        item_size_max: 1 << 20,
        cas_enabled: true,
    };
    let (router, services) = mesh.into_router(Rc::new(Shard::new(id, store)));
    let worker = Rc::new(Worker::new(
        Arc::new(Config::default()),
        process,
        router,
        now,
    ));
    mesh::spawn_services(&worker, services);
    assert!(barrier.ready(), "the start-up was given up");
    worker
}
