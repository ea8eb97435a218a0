//! The responder's sockets and the answer logic.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use kontti_core::ErrorKind;

use super::message::{self, Query, Rdata};
use super::records::WatchedRecords;

/// TTL of the answers: short, containers come and go.
const TTL: u32 = 10;

/// Why the responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding the listening address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
}

impl ServeError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServeError::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse => {
                ErrorKind::Conflict
            }
            ServeError::Bind { .. } => ErrorKind::Unavailable,
        }
    }
}

/// A bound responder; [`Responder::serve`] runs it.
#[derive(Debug)]
pub struct Responder {
    udp: UdpSocket,
    tcp: TcpListener,
    answerer: Arc<Answerer>,
}

#[derive(Debug)]
struct Answerer {
    records: Mutex<WatchedRecords>,
    upstreams: Vec<SocketAddr>,
}

impl Responder {
    /// Binds UDP and TCP on `addr`, serving names from `records`, forwarding
    /// unknown names to `upstreams` (none: answer NXDOMAIN).
    pub fn bind(
        addr: SocketAddr,
        records: &Path,
        upstreams: Vec<SocketAddr>,
    ) -> Result<Responder, ServeError> {
        let bind_err = |source| ServeError::Bind { addr, source };
        let udp = UdpSocket::bind(addr).map_err(bind_err)?;
        // Bind TCP on the port UDP got (matters when addr's port is 0).
        let addr = udp.local_addr().map_err(bind_err)?;
        let tcp = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
        let mut watched = WatchedRecords::new(records);
        watched.refresh();
        Ok(Responder {
            udp,
            tcp,
            answerer: Arc::new(Answerer {
                records: Mutex::new(watched),
                upstreams,
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Serves forever (until the process is killed).
    pub fn serve(self) -> io::Result<()> {
        let tcp = self.tcp;
        let answerer = Arc::clone(&self.answerer);
        thread::spawn(move || {
            for conn in tcp.incoming().flatten() {
                let answerer = Arc::clone(&answerer);
                thread::spawn(move || {
                    if let Err(e) = serve_tcp(conn, &answerer) {
                        tracing::debug!(error = %e, "tcp client");
                    }
                });
            }
        });
        let mut buf = [0u8; 1500];
        loop {
            let (n, peer) = match self.udp.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Some(reply) = self.answerer.answer(&buf[..n]) {
                let _ = self.udp.send_to(&reply, peer);
            }
        }
    }
}

fn serve_tcp(mut conn: TcpStream, answerer: &Answerer) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    loop {
        let mut len = [0u8; 2];
        match conn.read_exact(&mut len) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            other => other?,
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut msg)?;
        if let Some(reply) = answerer.answer(&msg) {
            let mut out = (reply.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&reply);
            conn.write_all(&out)?;
        }
    }
}

/// Parses `d.c.b.a.in-addr.arpa`.
fn reverse_name(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let parts: Vec<&str> = rest.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    for (i, p) in parts.iter().rev().enumerate() {
        octets[i] = p.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

impl Answerer {
    fn answer(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let q = match message::parse_query(msg) {
            Ok(q) => q,
            Err(_) => return message::error_response(msg, message::RCODE_FORMERR),
        };
        let local = {
            let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
            records.refresh();
            self.local_answer(&q, &records)
        };
        match local {
            Some(reply) => Some(reply),
            None if self.upstreams.is_empty() => {
                Some(message::response(&q, message::RCODE_NXDOMAIN, &[], TTL))
            }
            None => Some(
                self.forward(msg)
                    .unwrap_or_else(|| message::response(&q, message::RCODE_SERVFAIL, &[], 0)),
            ),
        }
    }

    /// The answer from the records, or `None` when the name is not ours.
    fn local_answer(&self, q: &Query, records: &WatchedRecords) -> Option<Vec<u8>> {
        let r = &records.current;
        if let Some(ip) = reverse_name(&q.name) {
            let name = r.reverse(ip)?;
            let answers = if q.qtype == message::TYPE_PTR {
                vec![Rdata::Ptr(name.to_owned())]
            } else {
                Vec::new()
            };
            return Some(message::response(q, message::RCODE_NOERROR, &answers, TTL));
        }
        let ips = r.lookup(&q.name);
        if ips.is_empty() {
            return None;
        }
        // A known name: A records for A queries, no data (NOERROR) for others
        // such as AAAA, so that resolvers fall back to A quickly.
        let answers: Vec<Rdata> = if q.qtype == message::TYPE_A {
            ips.into_iter().map(Rdata::A).collect()
        } else {
            Vec::new()
        };
        Some(message::response(q, message::RCODE_NOERROR, &answers, TTL))
    }

    /// Relays the query to the upstreams in order; the first reply wins.
    fn forward(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut buf = [0u8; 4096];
        for up in &self.upstreams {
            if sock.send_to(msg, up).is_err() {
                continue;
            }
            if let Ok((n, from)) = sock.recv_from(&mut buf)
                && from == *up
                && n >= 2
                && buf[..2] == msg[..2]
            {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::records::{Record, RecordsFile};

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend(message::encode_name(name).unwrap());
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    fn rcode(reply: &[u8]) -> u8 {
        reply[3] & 0x0f
    }

    fn ancount(reply: &[u8]) -> u16 {
        u16::from_be_bytes([reply[6], reply[7]])
    }

    #[test]
    fn answers_names_aliases_ptr_and_nxdomain_over_udp_and_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        RecordsFile {
            records: vec![Record {
                name: "web".into(),
                aliases: vec!["www".into()],
                ipv4: Ipv4Addr::new(10, 9, 0, 2),
            }],
        }
        .store(&path)
        .unwrap();
        let r = Responder::bind("127.0.0.1:0".parse().unwrap(), &path, Vec::new()).unwrap();
        let addr = r.local_addr().unwrap();
        thread::spawn(move || r.serve());
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ask = |name: &str, qtype: u16| {
            c.send_to(&query(name, qtype), addr).unwrap();
            let mut buf = [0u8; 512];
            let (n, _) = c.recv_from(&mut buf).unwrap();
            buf[..n].to_vec()
        };
        let a = ask("WWW", message::TYPE_A);
        assert_eq!((rcode(&a), ancount(&a)), (0, 1));
        assert_eq!(&a[a.len() - 4..], &[10, 9, 0, 2]);
        let aaaa = ask("web", message::TYPE_AAAA);
        assert_eq!((rcode(&aaaa), ancount(&aaaa)), (0, 0));
        let ptr = ask("2.0.9.10.in-addr.arpa", message::TYPE_PTR);
        assert_eq!((rcode(&ptr), ancount(&ptr)), (0, 1));
        let nx = ask("example.com", message::TYPE_A);
        assert_eq!(rcode(&nx), message::RCODE_NXDOMAIN);

        // The file is replaced: the next query sees the new records.
        RecordsFile {
            records: vec![Record {
                name: "db".into(),
                aliases: vec![],
                ipv4: Ipv4Addr::new(10, 9, 0, 3),
            }],
        }
        .store(&path)
        .unwrap();
        assert_eq!(rcode(&ask("web", message::TYPE_A)), message::RCODE_NXDOMAIN);
        assert_eq!(ancount(&ask("db", message::TYPE_A)), 1);

        let mut t = TcpStream::connect(addr).unwrap();
        let q = query("db", message::TYPE_A);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend(&q);
        t.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        t.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        t.read_exact(&mut reply).unwrap();
        assert_eq!(ancount(&reply), 1);
    }

    #[test]
    fn forwards_unknown_names_only_to_configured_upstreams() {
        // A fake upstream on loopback that answers everything with one A record.
        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
        let up_addr = up.local_addr().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = up.recv_from(&mut buf) {
                let q = message::parse_query(&buf[..n]).unwrap();
                let r = message::response(&q, 0, &[Rdata::A(Ipv4Addr::new(192, 0, 2, 99))], 1);
                up.send_to(&r, peer).unwrap();
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        RecordsFile::default().store(&path).unwrap();
        let r = Responder::bind("127.0.0.1:0".parse().unwrap(), &path, vec![up_addr]).unwrap();
        let addr = r.local_addr().unwrap();
        thread::spawn(move || r.serve());
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(&query("elsewhere.test", message::TYPE_A), addr)
            .unwrap();
        let mut buf = [0u8; 512];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[n - 4..n], &[192, 0, 2, 99]);
    }

    #[test]
    fn garbage_gets_formerr() {
        let dir = tempfile::tempdir().unwrap();
        let a = Answerer {
            records: Mutex::new(WatchedRecords::new(&dir.path().join("none.json"))),
            upstreams: vec![],
        };
        let r = a.answer(&[0, 5, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9]).unwrap();
        assert_eq!(rcode(&r), message::RCODE_FORMERR);
        assert_eq!(a.answer(&[1]), None);
        assert_eq!(
            reverse_name("1.2.3.4.in-addr.arpa"),
            Some(Ipv4Addr::new(4, 3, 2, 1))
        );
        assert_eq!(reverse_name("1.2.3.in-addr.arpa"), None);
    }
}
