//! memcached's command line, parsed with argh and checked into a [`Config`].
//!
//! memcached uses getopt, so scripts write `-vv`, `-m64`, `--port=11211`; [`normalize`] rewrites
//! those into the separate-argument form argh reads. Every refusal is one line naming the flag,
//! and the binary exits with status 64 (EX_USAGE) before anything listens.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use rampart_server::auth::AuthSettings;
use rampart_server::config::{
    Config, ListenerTls, ProtocolChoice, Security, TcpListen, TlsSettings,
};

const MEGABYTE: usize = 1024 * 1024;

/// rampart: a memcached-compatible cache server, secure by default.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// TCP port to listen on (default 11211; 0 disables TCP)
    #[argh(option, short = 'p', default = "11211")]
    pub port: u16,
    /// interface(s) to listen on, comma separated, host[:port] (default 127.0.0.1 and ::1)
    #[argh(option, short = 'l')]
    pub listen: Vec<String>,
    /// UDP port: only 0 is accepted, rampart has no UDP
    #[argh(option, short = 'U', default = "0")]
    pub udp_port: u32,
    /// unix socket path to listen on (disables TCP)
    #[argh(option, short = 's')]
    pub unix_socket: Option<PathBuf>,
    /// access mask for the unix socket, in octal (default 0700)
    #[argh(option, short = 'a', default = "String::from(\"0700\")")]
    pub unix_mask: String,
    /// item memory in megabytes (default 64)
    #[argh(option, short = 'm', default = "64")]
    pub memory_limit: usize,
    /// max simultaneous connections (default 1024)
    #[argh(option, short = 'c', default = "1024")]
    pub conn_limit: usize,
    /// number of threads: executors, each pinned to its own CPU with its own shard (default:
    /// every CPU this process may run on)
    #[argh(option, short = 't')]
    pub threads: Option<usize>,
    /// max item size, with k/m suffix (default 1m, min 1k, max 1024m)
    #[argh(option, short = 'I', default = "String::from(\"1m\")")]
    pub max_item_size: String,
    /// return an error when memory is exhausted instead of evicting
    #[argh(switch, short = 'M')]
    pub disable_evictions: bool,
    /// assume the identity of this user (required when started as root)
    #[argh(option, short = 'u')]
    pub user: Option<String>,
    /// enable the ascii `shutdown` command
    #[argh(switch, short = 'A')]
    pub enable_shutdown: bool,
    /// disable `flush_all`
    #[argh(switch, short = 'F')]
    pub disable_flush_all: bool,
    /// max requests handled per connection before yielding (default 20)
    #[argh(option, short = 'R', default = "20")]
    pub max_reqs_per_event: usize,
    /// protocol: auto, ascii or binary (default auto)
    #[argh(option, short = 'B', default = "String::from(\"auto\")")]
    pub protocol: String,
    /// listen backlog (default 1024)
    #[argh(option, short = 'b', default = "1024")]
    pub listen_backlog: u32,
    /// verbose: -v debug detail, -vv trace (the verbosity command changes it later)
    #[argh(switch, short = 'v')]
    pub verbose: u32,
    /// comma separated extended options: idle_timeout=<seconds>,
    /// read_buf_mem_limit=<MB> (default -m; 0 no limit), ssl_chain_cert, ssl_key,
    /// ssl_keyformat, ssl_verify_mode, ssl_ciphers, ssl_ca_cert, ssl_wbuf_size,
    /// ssl_session_cache, ssl_kernel_tls, ssl_min_version, ssl_handshake_timeout,
    /// ssl_psk_file, ssl_cert_user=<cn|san.dns|san.email|san.uri>[:prefix],
    /// sasl_plain_cleartext, auth_timeout=<seconds>, auth_exempt_unix_socket,
    /// acl_file=<path>, remote_admin, audit_log=<path|->, audit_auth_success,
    /// audit_connections, and
    /// memcached's tuning options
    #[argh(option, short = 'o')]
    pub extended: Vec<String>,
    /// enable TLS on every listener without a notls: prefix
    #[argh(switch, short = 'Z')]
    pub enable_ssl: bool,
    /// ASCII authentication: a file of user:password (or hashed, `rampart passwd`) entries
    #[argh(option, short = 'Y')]
    pub auth_file: Option<PathBuf>,
    /// SASL authentication on the binary protocol (passwords from MEMCACHED_SASL_PWDB or -Y)
    #[argh(switch, short = 'S')]
    pub enable_sasl: bool,
    /// disable CAS: every CAS unique is 0 and `cas` never matches (memcached's -C)
    #[argh(switch, short = 'C')]
    pub disable_cas: bool,
    /// disable `stats cachedump` and `lru_crawler metadump`
    #[argh(switch, short = 'X')]
    pub disable_dumping: bool,
    /// disable `watch` (live logging)
    #[argh(switch, short = 'W')]
    pub disable_watch: bool,
    /// lock all memory into RAM (needs a locked-memory limit, ulimit -l, that holds it)
    #[argh(switch, short = 'k')]
    pub lock_memory: bool,
    /// raise the core file size limit to its maximum
    #[argh(switch, short = 'r')]
    pub enable_coredumps: bool,
    /// large memory pages: accepted, no effect (rampart has no slab preallocation)
    #[argh(switch, short = 'L')]
    pub enable_largepages: bool,
    /// slab chunk size growth factor: accepted and shown, no effect (one size class)
    #[argh(option, short = 'f', default = "String::from(\"1.25\")")]
    pub slab_growth_factor: String,
    /// minimum slab chunk size: accepted and shown, no effect (one size class)
    #[argh(option, short = 'n', default = "48")]
    pub slab_min_size: usize,
    /// delimiter between key prefixes and ids for `stats detail` (turns it on)
    #[argh(option, short = 'D')]
    pub prefix_delimiter: Option<String>,
    /// memory file for a restartable cache: accepted, no effect (the cache starts empty)
    #[argh(option, short = 'e')]
    pub memory_file: Option<PathBuf>,
    /// print the licenses and exit
    #[argh(switch, short = 'i')]
    pub license: bool,
    /// run as a daemon: detach once the server listens (stays attached on a start-up error)
    #[argh(switch, short = 'd')]
    pub daemon: bool,
    /// write the process id to this file once listening (removed at a clean stop)
    #[argh(option, short = 'P')]
    pub pid_file: Option<PathBuf>,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
}

/// Rewrites getopt spellings (`-vv`, `-m64`, `--port=1`) into separate arguments.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const TAKES_VALUE: &str = "plUsamctIuRBboYPfnDe";
    let mut out = Vec::new();
    let mut value_next = false;
    for arg in args {
        if value_next {
            out.push(arg);
            value_next = false;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => {
                    out.push(format!("--{name}"));
                    out.push(value.to_string());
                }
                None => out.push(arg),
            }
            continue;
        }
        if arg == "-h" {
            out.push("--help".to_string());
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| c.len() > 1) else {
            out.push(arg);
            continue;
        };
        // A cluster of switches (`-vv`, `-vA`) or a flag with its value attached (`-m64`).
        for (i, c) in cluster.char_indices() {
            // argh spells help only `--help`; memcached's is `-h`.
            out.push(if c == 'h' {
                "--help".to_string()
            } else {
                format!("-{c}")
            });
            if TAKES_VALUE.contains(c) {
                let rest = &cluster[i + c.len_utf8()..];
                if rest.is_empty() {
                    value_next = true;
                } else {
                    out.push(rest.to_string());
                }
                break;
            }
        }
    }
    out
}

/// A refused command line: one line that names the flag.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// memcached's size syntax for `-I`: bytes, or a number with k, m or g.
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1024),
        (i, 'm' | 'M') => (&text[..i], MEGABYTE),
        (i, 'g' | 'G') => (&text[..i], 1024 * MEGABYTE),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// memcached's `-o` suboptions that tune its slab allocator and background threads. rampart
/// has neither, so they are accepted (scripts keep working) and have no effect.
const IGNORED_SUBOPTIONS: &[&str] = &[
    "maxconns_fast",
    "no_maxconns_fast",
    "hashpower",
    "tail_repair_time",
    "lru_crawler",
    "no_lru_crawler",
    "lru_maintainer",
    "no_lru_maintainer",
    "hot_lru_pct",
    "warm_lru_pct",
    "hot_max_factor",
    "warm_max_factor",
    "temporary_ttl",
    "watcher_logbuf_size",
    "worker_logbuf_size",
    "track_sizes",
    "no_hashexpand",
    "slab_reassign",
    "no_slab_reassign",
    "slab_automove",
    "slab_automove_ratio",
    "slab_automove_window",
    "slab_chunk_max",
    "lru_crawler_sleep",
    "lru_crawler_tocrawl",
    "modern",
    "no_modern",
    "no_inline_ascii_resp",
    "hash_algorithm",
    "drop_privileges",
    "no_drop_privileges",
    "resp_obj_mem_limit",
];

fn parse_listen(entry: &str, port: u16) -> Result<Vec<SocketAddr>, UsageError> {
    let bad = || {
        usage(format!(
            "-l {entry}: not an address (host, host:port or [v6]:port)"
        ))
    };
    // `[v6]:port`, `[v6]`, a bare v6 address, `host:port`, or `host`.
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => port,
            None => return Err(bad()),
        };
        (host, port)
    } else if entry.matches(':').count() > 1 {
        (entry, port)
    } else if let Some((host, p)) = entry.rsplit_once(':') {
        (host, p.parse().map_err(|_| bad())?)
    } else {
        (entry, port)
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| usage(format!("-l {entry}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(bad());
    }
    Ok(addrs)
}

/// Checks the arguments and builds the server's configuration. `cpus` is how many CPUs the
/// process's affinity mask allows: the default `-t` and its upper bound.
pub fn to_config(
    args: Args,
    port_file: Option<PathBuf>,
    cpus: usize,
) -> Result<Config, UsageError> {
    if args.udp_port != 0 {
        return Err(usage(format!(
            "-U {}: UDP is not supported: memcached's UDP protocol is unauthenticated and a \
             known DDoS amplification vector; use TCP",
            args.udp_port
        )));
    }
    let item_size_max = parse_size(&args.max_item_size)
        .ok_or_else(|| usage(format!("-I {}: not a size", args.max_item_size)))?;
    if item_size_max < 1024 {
        return Err(usage("-I: item max size cannot be less than 1024 bytes"));
    }
    if item_size_max > 1024 * MEGABYTE {
        return Err(usage(
            "-I: cannot set item size limit higher than a gigabyte",
        ));
    }
    if args.memory_limit == 0 {
        return Err(usage("-m: the memory limit must be at least 1 megabyte"));
    }
    let memory_limit_bytes = args
        .memory_limit
        .checked_mul(MEGABYTE)
        .ok_or_else(|| usage(format!("-m {}: too large", args.memory_limit)))?;
    if item_size_max > memory_limit_bytes / 2 {
        return Err(usage(
            "-I: cannot set item size limit higher than 1/2 of memory max (-m)",
        ));
    }
    let threads = args.threads.unwrap_or(cpus.max(1));
    if threads == 0 {
        return Err(usage("-t: number of threads must be greater than 0"));
    }
    if threads > cpus {
        return Err(usage(rampart_server::too_many_threads(threads, cpus)));
    }
    if args.conn_limit == 0 {
        return Err(usage("-c: the connection limit must be greater than 0"));
    }
    if args.max_reqs_per_event == 0 {
        return Err(usage(
            "-R: number of requests per event must be greater than 0",
        ));
    }
    let protocol = match args.protocol.as_str() {
        "auto" => ProtocolChoice::Auto,
        "ascii" => ProtocolChoice::Ascii,
        "binary" => ProtocolChoice::Binary,
        other => {
            return Err(usage(format!(
                "-B {other}: invalid value for binding protocol; should be one of auto, binary, or ascii"
            )));
        }
    };
    let unix_mask = u32::from_str_radix(&args.unix_mask, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            usage(format!(
                "-a {}: not an octal permission mask",
                args.unix_mask
            ))
        })?;
    let growth_factor: f64 = args
        .slab_growth_factor
        .parse()
        .ok()
        .filter(|f: &f64| *f > 1.0)
        .ok_or_else(|| usage("-f: factor must be greater than 1"))?;
    if args.slab_min_size == 0 {
        return Err(usage("-n: chunk_size must be greater than 0"));
    }
    let stat_key_prefix = match args.prefix_delimiter.as_deref() {
        None => None,
        Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
        Some(d) => {
            return Err(usage(format!(
                "-D {d}: the prefix delimiter must be one character"
            )));
        }
    };
    if args.enable_largepages {
        log::info!("-L: large pages have no effect on rampart (no slab preallocation)");
    }
    if let Some(path) = &args.memory_file {
        log::warn!(
            "-e {}: rampart has no restartable cache; the cache starts empty and the file is not used",
            path.display()
        );
    }
    let mut idle_timeout = None;
    let mut read_buf_mem_limit = None;
    let mut acl_file = None;
    let mut remote_admin = false;
    let mut audit = rampart_server::audit::AuditSettings::default();
    let mut auth = AuthSettings {
        ascii_file: args.auth_file.clone(),
        sasl: args.enable_sasl,
        ..AuthSettings::default()
    };
    let mut tls = TlsSettings {
        enabled: args.enable_ssl,
        ..TlsSettings::default()
    };
    for option in args.extended.iter().flat_map(|o| o.split(',')) {
        let (name, value) = option.split_once('=').unwrap_or((option, ""));
        let tls_value = option.split_once('=').map(|(_, v)| v);
        if let Some(applied) = tls.apply_option(name, tls_value) {
            applied.map_err(|e| usage(format!("-o {option}: {e}")))?;
            continue;
        }
        match name {
            "idle_timeout" => {
                let seconds: u64 = value.parse().map_err(|_| {
                    usage(format!("-o idle_timeout={value}: not a number of seconds"))
                })?;
                idle_timeout = (seconds > 0).then(|| Duration::from_secs(seconds));
            }
            "read_buf_mem_limit" => {
                let megabytes: usize = value.parse().map_err(|_| {
                    usage(format!(
                        "-o read_buf_mem_limit={value}: not a number of megabytes"
                    ))
                })?;
                let bytes = megabytes
                    .checked_mul(1024 * 1024)
                    .ok_or_else(|| usage(format!("-o read_buf_mem_limit={value}: too large")))?;
                read_buf_mem_limit = Some(bytes);
            }
            "acl_file" if !value.is_empty() => acl_file = Some(PathBuf::from(value)),
            "acl_file" => return Err(usage("-o acl_file=<path>: the path is missing")),
            "remote_admin" => remote_admin = true,
            "audit_log" if value == "-" => {
                audit.target = Some(rampart_server::audit::Target::Stderr);
            }
            "audit_log" if !value.is_empty() => {
                audit.target = Some(rampart_server::audit::Target::File(PathBuf::from(value)));
            }
            "audit_log" => {
                return Err(usage(
                    "-o audit_log=<path>: the path is missing (- is stderr)",
                ));
            }
            "audit_auth_success" => audit.auth_success = true,
            "audit_connections" => audit.connections = true,
            "sasl_plain_cleartext" => auth.plain_cleartext = true,
            "auth_exempt_unix_socket" => auth.exempt_unix_socket = true,
            "ssl_cert_user" => {
                let rule = rampart_auth::CertUserRule::parse(value)
                    .map_err(|err| usage(format!("-o ssl_cert_user={value}: {err}")))?;
                auth.cert_user = Some(rule);
            }
            "auth_timeout" => {
                let seconds: u64 = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    usage(format!(
                        "-o auth_timeout={value}: not a positive number of seconds"
                    ))
                })?;
                auth.timeout = Duration::from_secs(seconds);
            }
            "" => {}
            name if IGNORED_SUBOPTIONS.contains(&name) => {
                log::info!("-o {name}: memcached tuning option, no effect on rampart");
            }
            name => return Err(usage(format!("-o {name}: illegal suboption"))),
        }
    }
    let mut tcp = Vec::new();
    if args.unix_socket.is_none() && args.port != 0 {
        if args.listen.is_empty() {
            // Secure default: loopback only, both families when the host has them.
            let security = default_security(tls.enabled);
            for ip in [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ] {
                tcp.push(TcpListen {
                    addr: SocketAddr::new(ip, args.port),
                    optional: true,
                    security,
                });
            }
        } else {
            for entry in args.listen.iter().flat_map(|l| l.split(',')) {
                let (security, address) = listener_security(entry.trim(), tls.enabled)?;
                if security == Security::Tls(ListenerTls::Psk) && tls.psk_file.is_none() {
                    return Err(usage(format!(
                        "-l {entry}: the psk: prefix accepts only pre-shared keys, which need -o ssl_psk_file"
                    )));
                }
                // (Without a certificate or PSKs, -Z fails later with memcached's own line.)
                if security == Security::Tls(ListenerTls::Mtls)
                    && tls.chain_cert.is_none()
                    && tls.psk_file.is_some()
                {
                    return Err(usage(format!(
                        "-l {entry}: the mtls: prefix needs a server certificate (-o ssl_chain_cert)"
                    )));
                }
                for addr in parse_listen(address, args.port)? {
                    tcp.push(TcpListen {
                        addr,
                        optional: false,
                        security,
                    });
                }
            }
        }
    }
    // A certificate can name a user only where the server asks for one and verifies it.
    let asks_for_certificates = tls.verify_mode != rampart_server::config::VerifyMode::None
        || tcp
            .iter()
            .any(|l| l.security == Security::Tls(ListenerTls::Mtls));
    if let Some(rule) = &auth.cert_user
        && !(tls.enabled && asks_for_certificates)
    {
        return Err(usage(format!(
            "-o ssl_cert_user={rule}: needs verified client certificates: -Z with -o ssl_verify_mode=1 or more, or an mtls: listener"
        )));
    }
    if tls.enabled && tcp.is_empty() {
        // memcached's words: TLS needs a TCP listener (unix sockets stay plaintext).
        return Err(usage("ERROR: You cannot enable SSL without a TCP port."));
    }
    Ok(Config {
        tcp,
        unix_socket: args.unix_socket.map(|path| (path, unix_mask)),
        backlog: args.listen_backlog,
        memory_limit_bytes,
        max_connections: args.conn_limit,
        threads,
        item_size_max,
        evict: !args.disable_evictions,
        shutdown_enabled: args.enable_shutdown,
        flush_enabled: !args.disable_flush_all,
        requests_per_event: args.max_reqs_per_event,
        protocol,
        verbosity: args.verbose,
        idle_timeout,
        read_buf_mem_limit,
        port_file,
        pid_file: args.pid_file,
        cas_enabled: !args.disable_cas,
        dump_enabled: !args.disable_dumping,
        watch_enabled: !args.disable_watch,
        lock_memory: args.lock_memory,
        enable_coredumps: args.enable_coredumps,
        growth_factor,
        chunk_size: args.slab_min_size,
        detail_enabled: stat_key_prefix.is_some(),
        stat_key_prefix: stat_key_prefix.unwrap_or(b':'),
        memory_file: args.memory_file,
        run_as: run_as(args.user)?,
        tls,
        auth,
        acl_file,
        remote_admin,
        audit,
    })
}

/// `MEMCACHED_SASL_PWDB`'s file, for `-S`.
pub fn with_sasl_file(mut config: Config, file: Option<PathBuf>) -> Config {
    config.auth.sasl_file = file;
    config
}

/// A listener without a prefix: TLS in `ssl_verify_mode`'s mode with `-Z`, else plaintext.
fn default_security(tls_enabled: bool) -> Security {
    if tls_enabled {
        Security::Tls(ListenerTls::Default)
    } else {
        Security::Plain
    }
}

/// Splits a `-l` entry's `notls:`, `btls:`, `mtls:` or `psk:` prefix from its address.
fn listener_security(entry: &str, tls_enabled: bool) -> Result<(Security, &str), UsageError> {
    let prefixes = [
        ("notls:", Security::Plain),
        ("btls:", Security::Tls(ListenerTls::Btls)),
        ("mtls:", Security::Tls(ListenerTls::Mtls)),
        ("psk:", Security::Tls(ListenerTls::Psk)),
    ];
    for (prefix, security) in prefixes {
        if let Some(address) = entry.strip_prefix(prefix) {
            if security != Security::Plain && !tls_enabled {
                return Err(usage(format!(
                    "-l {entry}: the {prefix} prefix asks for TLS, which needs -Z"
                )));
            }
            return Ok((security, address));
        }
    }
    Ok((default_security(tls_enabled), entry))
}

/// The unprivileged account rampart switches to when started as root without `-u`.
const DEFAULT_UNPRIVILEGED_USER: &str = "nobody";

/// Who to become after binding. memcached refuses to start as root without `-u`, which
/// pushes operators to write `-u root`; rampart never keeps root: without `-u` it switches to
/// `nobody`, and refuses only when that account does not exist. `-u root` is still honoured
/// as an explicit choice.
fn run_as(user: Option<String>) -> Result<Option<String>, UsageError> {
    // SAFETY: getuid/geteuid cannot fail and touch no memory.
    let root = unsafe { libc::getuid() == 0 || libc::geteuid() == 0 };
    if user.is_some() || !root {
        return Ok(user);
    }
    let name = std::ffi::CString::new(DEFAULT_UNPRIVILEGED_USER)
        .map_err(|_| usage("can't run as root without the -u switch"))?;
    // SAFETY: getpwnam takes a NUL-terminated name and returns a pointer we only test for null.
    let exists = unsafe { !libc::getpwnam(name.as_ptr()).is_null() };
    if !exists {
        return Err(usage(format!(
            "can't run as root without the -u switch (there is no {DEFAULT_UNPRIVILEGED_USER} user to switch to)"
        )));
    }
    log::warn!(
        "started as root without -u: switching to {DEFAULT_UNPRIVILEGED_USER} after binding (pass -u <user> to choose)"
    );
    Ok(Some(DEFAULT_UNPRIVILEGED_USER.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test.

    use super::*;

    fn config(line: &str) -> Result<Config, UsageError> {
        let argv = normalize(line.split_whitespace().map(String::from));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let args = Args::from_args(&["rampart"], &argv).map_err(|e| UsageError(e.output))?;
        to_config(args, None, 4)
    }

    #[test]
    fn getopt_spellings_are_normalised() {
        let argv = normalize(["-vv", "-m64", "--port=5", "-p", "6", "-vA"].map(String::from));
        assert_eq!(
            argv,
            ["-v", "-v", "-m", "64", "--port", "5", "-p", "6", "-v", "-A"]
        );
        let c = config("-vv -m128 -c 10 -t 2 -I 2m -M -A -F -R 5 -B ascii").unwrap();
        assert_eq!(c.verbosity, 2);
        assert_eq!(c.memory_limit_bytes, 128 * MEGABYTE);
        assert_eq!(c.item_size_max, 2 * MEGABYTE);
        assert!(!c.evict && c.shutdown_enabled && !c.flush_enabled);
        assert_eq!(
            (c.max_connections, c.threads, c.requests_per_event),
            (10, 2, 5)
        );
    }

    #[test]
    fn default_listens_on_loopback_only() {
        let c = config("").unwrap();
        let addrs: Vec<String> = c.tcp.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:11211", "[::1]:11211"]);
        assert!(c.tcp.iter().all(|l| l.optional));
    }

    #[test]
    fn listen_forms() {
        let c = config("-l 127.0.0.1:0,[::1]:7 -l ::1 -p 9").unwrap();
        let addrs: Vec<String> = c.tcp.iter().map(|l| l.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:0", "[::1]:7", "[::1]:9"]);
        assert!(config("-p 0").unwrap().tcp.is_empty());
        assert!(config("-s /tmp/x.sock").unwrap().tcp.is_empty());
    }

    #[test]
    fn tls_listeners_take_their_prefix() {
        let c = config("-Z -o ssl_verify_mode=1,ssl_psk_file=p,ssl_chain_cert=c -l notls:127.0.0.1:1,mtls:127.0.0.1:2,btls:[::1]:3 -l 127.0.0.1:4,psk:127.0.0.1:5").unwrap();
        let listeners: Vec<(String, Security)> = c
            .tcp
            .iter()
            .map(|l| (l.addr.to_string(), l.security))
            .collect();
        assert_eq!(
            listeners,
            [
                ("127.0.0.1:1".to_string(), Security::Plain),
                ("127.0.0.1:2".to_string(), Security::Tls(ListenerTls::Mtls)),
                ("[::1]:3".to_string(), Security::Tls(ListenerTls::Btls)),
                (
                    "127.0.0.1:4".to_string(),
                    Security::Tls(ListenerTls::Default)
                ),
                ("127.0.0.1:5".to_string(), Security::Tls(ListenerTls::Psk)),
            ]
        );
        assert!(c.tls.enabled);
        // ssl_cert_user is accepted where client certificates are verified: with
        // ssl_verify_mode or on an mtls: listener.
        for line in [
            "-Z -o ssl_verify_mode=1,ssl_cert_user=san.uri:spiffe://example.org/",
            "-Z -o ssl_cert_user=cn -l mtls:127.0.0.1:1",
        ] {
            let c = config(line).unwrap();
            let rule = c.auth.cert_user.expect("a rule");
            assert!(rule.to_string().starts_with("san.uri:spiffe://") || rule.to_string() == "cn");
        }
        // Without -Z every listener is plaintext; notls: is accepted and changes nothing.
        let c = config("-l notls:127.0.0.1:1").unwrap();
        assert_eq!(c.tcp[0].security, Security::Plain);
        assert!(!c.tls.enabled);
        let c = config("").unwrap();
        assert!(c.tcp.iter().all(|l| l.security == Security::Plain));
    }

    #[test]
    fn threads_default_to_every_allowed_cpu() {
        assert_eq!(config("").unwrap().threads, 4);
        assert_eq!(config("-t 4").unwrap().threads, 4);
        assert_eq!(config("-t 1").unwrap().threads, 1);
    }

    #[test]
    fn refusals_name_the_flag() {
        for (line, needle) in [
            ("-U 1", "UDP is not supported"),
            ("-I 512", "less than 1024"),
            ("-m 1 -I 1m", "1/2 of memory"),
            ("-t 0", "-t"),
            ("-t 5", "-t 5: this process may run on 4 CPUs"),
            ("-B nope", "-B nope"),
            ("-o bogus=1", "bogus"),
            ("-o ssl_verify_mode=5", "Invalid ssl_verify_mode"),
            ("-o ssl_key", "Missing ssl_key argument"),
            ("-Z -p 0", "You cannot enable SSL without a TCP port."),
            (
                "-Z -s /tmp/x.sock",
                "You cannot enable SSL without a TCP port.",
            ),
            ("-l mtls:127.0.0.1", "needs -Z"),
            ("-o ssl_cert_user=cn", "needs verified client certificates"),
            (
                "-Z -o ssl_cert_user=cn",
                "needs verified client certificates",
            ),
            ("-Z -o ssl_cert_user=subject", "no certificate field"),
            ("-Z -o ssl_cert_user=san.uri:", "prefix"),
            ("-l 1.2.3.4:notaport", "-l"),
            ("--no-such-flag", "no-such-flag"),
        ] {
            let err = config(line).unwrap_err();
            assert!(err.0.contains(needle), "{line}: {}", err.0);
        }
        assert_eq!(config("-U 0").unwrap().tcp.len(), 2);
        assert!(
            config("-o modern,idle_timeout=5")
                .unwrap()
                .idle_timeout
                .is_some()
        );
    }

    #[test]
    fn read_buf_mem_limit_is_megabytes_defaulting_to_the_memory_limit() {
        let limit = |line: &str| config(line).unwrap().read_buf_limit_bytes();
        assert_eq!(limit("-m 100"), Some(100 << 20));
        assert_eq!(limit("-o read_buf_mem_limit=8"), Some(8 << 20));
        assert_eq!(limit("-o read_buf_mem_limit=0"), None);
        let err = config("-o read_buf_mem_limit=lots").unwrap_err();
        assert!(err.0.contains("read_buf_mem_limit=lots"), "{}", err.0);
    }
}
