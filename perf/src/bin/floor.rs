//! `rampart-floor`: the smallest correct server for the benchmark's workload, the measure of
//! what any server must spend per request here (see `rampart_perf::floor`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use rampart_perf::floor::uring::UringFloor;
use rampart_perf::floor::{Floor, FloorCerts, FloorConfig};

/// The smallest correct memcached-protocol server for `get` and `set`, plaintext or TLS: a
/// measuring instrument for `cargo xtask bench-tls`, not a cache to deploy. Writes
/// `TCP INET: <port>` to $MEMCACHED_PORT_FILENAME once listening.
#[derive(FromArgs, Debug)]
struct Args {
    /// address to listen on (default 127.0.0.1:0, an ephemeral port)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 0))")]
    listen: SocketAddr,
    /// serve TLS with this certificate chain (PEM); needs --key
    #[argh(option)]
    cert: Option<PathBuf>,
    /// the certificate's private key (PEM)
    #[argh(option)]
    key: Option<PathBuf>,
    /// serve through io_uring instead of epoll: multishot receives into provided buffers and
    /// sends submitted by the waiting enter (plaintext only; Linux 6.1 or later)
    #[argh(switch)]
    io_uring: bool,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let tls = match (args.cert, args.key) {
        (Some(chain), Some(key)) => Some(FloorCerts { chain, key }),
        (None, None) => None,
        _ => {
            eprintln!("rampart-floor: --cert and --key go together");
            return ExitCode::from(2);
        }
    };
    let config = FloorConfig {
        listen: args.listen,
        tls,
        port_file: std::env::var_os("MEMCACHED_PORT_FILENAME").map(PathBuf::from),
    };
    let result = if args.io_uring {
        UringFloor::bind(&config).and_then(UringFloor::run)
    } else {
        Floor::bind(&config).and_then(Floor::run)
    };
    if let Err(e) = result {
        eprintln!("rampart-floor: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
