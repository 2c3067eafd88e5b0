//! The client side of the text protocol: requests back into bytes.
//!
//! Used by load generators and by the parser's round-trip tests; `parse(encode(r)) == r`.
//! Meta requests are written in their meta form (a text connection reads them too); SASL has
//! no text form and writes nothing.

use crate::request::{Acl, AuthCommand, Request, ShutdownMode, StoreMode};

/// Appends the wire form of `request`.
pub fn encode(request: &Request<'_>, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    // Every word is followed by a space; the last space becomes the line's `\r\n`.
    let word = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(bytes);
        out.push(b' ');
    };
    let line = out;
    let noreply = match request {
        Request::MetaGet(_)
        | Request::MetaSet(_)
        | Request::MetaDelete(_)
        | Request::MetaArith(_)
        | Request::MetaNoop
        | Request::MetaDebug(_) => return crate::meta::encode(request, line),
        Request::Sasl(_) => return,
        Request::Acl(acl) => {
            word(line, b"acl");
            match acl {
                Acl::Reload => word(line, b"reload"),
                Acl::Log => word(line, b"log"),
                Acl::LogReset => {
                    word(line, b"log");
                    word(line, b"reset");
                }
                Acl::Check { identity, request } => {
                    word(line, b"check");
                    word(line, identity);
                    word(line, request);
                }
                Acl::Usage => word(line, b"help"),
            }
            false
        }
        Request::Auth(command) => {
            word(line, b"auth");
            word(
                line,
                match command {
                    AuthCommand::Reload => b"reload",
                    AuthCommand::Usage => b"help",
                },
            );
            false
        }
        Request::Get(get) => {
            word(line, request.command_name().as_bytes());
            if let Some(exptime) = get.touch {
                word(line, digits.format(exptime).as_bytes());
            }
            for key in get.keys.iter() {
                word(line, key);
            }
            false
        }
        Request::Store(store) => {
            word(line, store.mode.command_name().as_bytes());
            word(line, store.key);
            word(line, digits.format(store.flags).as_bytes());
            word(line, digits.format(store.exptime).as_bytes());
            word(line, digits.format(store.data.len()).as_bytes());
            if let StoreMode::Cas(unique) = store.mode {
                word(line, digits.format(unique).as_bytes());
            }
            store.noreply
        }
        Request::Arith(arith) => {
            word(line, request.command_name().as_bytes());
            word(line, arith.key);
            word(line, digits.format(arith.delta).as_bytes());
            arith.noreply
        }
        Request::Delete(delete) => {
            word(line, b"delete");
            word(line, delete.key);
            delete.noreply
        }
        Request::Touch(touch) => {
            word(line, b"touch");
            word(line, touch.key);
            word(line, digits.format(touch.exptime).as_bytes());
            touch.noreply
        }
        Request::FlushAll(flush) => {
            word(line, b"flush_all");
            if flush.delay != 0 {
                word(line, digits.format(flush.delay).as_bytes());
            }
            flush.noreply
        }
        Request::Verbosity(verbosity) => {
            word(line, b"verbosity");
            word(line, digits.format(verbosity.level).as_bytes());
            verbosity.noreply
        }
        Request::Shutdown(mode) => {
            word(line, b"shutdown");
            match mode {
                ShutdownMode::Immediate => {}
                ShutdownMode::Graceful => word(line, b"graceful"),
                ShutdownMode::Invalid => word(line, b"invalid"),
            }
            false
        }
        Request::Stats(stats) => {
            word(line, b"stats");
            for arg in std::iter::once(stats.group).chain(stats.args).flatten() {
                word(line, arg);
            }
            false
        }
        Request::Admin(admin) => {
            word(line, admin.line);
            false
        }
        Request::CacheMemlimit(limit) => {
            word(line, b"cache_memlimit");
            word(line, digits.format(limit.megabytes).as_bytes());
            limit.noreply
        }
        Request::RefreshCerts { noreply } => {
            word(line, b"refresh_certs");
            *noreply
        }
        Request::Version | Request::Quit => {
            word(line, request.command_name().as_bytes());
            false
        }
    };
    if noreply {
        word(line, b"noreply");
    }
    line.pop();
    line.extend_from_slice(b"\r\n");
    if let Request::Store(store) = request {
        line.extend_from_slice(store.data);
        line.extend_from_slice(b"\r\n");
    }
}
