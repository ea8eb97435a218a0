//! The few pieces of the DNS wire format (RFC 1035) the responder needs:
//! parsing a query's header and first question, and building answers. Pure,
//! bounds-checked on every read (queries come from containers).

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Response code: no error.
pub const RCODE_NOERROR: u8 = 0;
/// Response code: the server could not parse the query.
pub const RCODE_FORMERR: u8 = 1;
/// Response code: the server failed (e.g. the upstream did not answer).
pub const RCODE_SERVFAIL: u8 = 2;
/// Response code: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The message ends before a field it announces.
    #[error("dns message truncated")]
    Truncated,
    /// A name is malformed (bad label length, pointer loop, over 255 bytes).
    #[error("dns name malformed")]
    BadName,
    /// The message is a response or has no question.
    #[error("dns message is not a query with a question")]
    NotAQuery,
}

/// A parsed query: its header fields and first question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The transaction id.
    pub id: u16,
    /// The opcode and RD bit, copied into the response.
    pub flags: u16,
    /// The question name, lowercased, without the trailing dot.
    pub name: String,
    /// The question type.
    pub qtype: u16,
    /// The question class.
    pub qclass: u16,
    /// The raw question section (name, type, class), echoed in responses.
    question: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> Result<u16, MessageError> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(MessageError::Truncated),
    }
}

/// Reads the name at `at`; returns it and the offset after it (after the
/// first pointer, if the name was compressed).
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), MessageError> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(at).ok_or(MessageError::Truncated)? as usize;
        match len {
            0 => {
                return Ok((name, end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let ptr = (be16(msg, at)? & 0x3fff) as usize;
                end.get_or_insert(at + 2);
                jumps += 1;
                if jumps > 16 || ptr >= at {
                    return Err(MessageError::BadName);
                }
                at = ptr;
            }
            l if l > 63 => return Err(MessageError::BadName),
            l => {
                let label = msg.get(at + 1..at + 1 + l).ok_or(MessageError::Truncated)?;
                if !name.is_empty() {
                    name.push('.');
                }
                for &c in label {
                    name.push(char::from(c.to_ascii_lowercase()));
                }
                if name.len() > 253 {
                    return Err(MessageError::BadName);
                }
                at += 1 + l;
            }
        }
    }
}

/// Parses a query; only the first question is answered (as every resolver
/// sends one).
pub fn parse_query(msg: &[u8]) -> Result<Query, MessageError> {
    let id = be16(msg, 0)?;
    let flags = be16(msg, 2)?;
    let qdcount = be16(msg, 4)?;
    if flags & 0x8000 != 0 || qdcount == 0 {
        return Err(MessageError::NotAQuery);
    }
    let (name, after) = read_name(msg, 12)?;
    let qtype = be16(msg, after)?;
    let qclass = be16(msg, after + 2)?;
    let mut question = encode_name(&name).ok_or(MessageError::BadName)?;
    question.extend_from_slice(&qtype.to_be_bytes());
    question.extend_from_slice(&qclass.to_be_bytes());
    Ok(Query {
        id,
        flags,
        name,
        qtype,
        qclass,
        question,
    })
}

/// Encodes a dotted name in wire format; `None` for an invalid label.
pub fn encode_name(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        if label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

/// One answer record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    /// An IPv4 address.
    A(std::net::Ipv4Addr),
    /// A name (for PTR).
    Ptr(String),
}

/// Builds an authoritative response to `q` with `answers` (TTL in seconds).
pub fn response(q: &Query, rcode: u8, answers: &[Rdata], ttl: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, the query's opcode and RD, AA set; RA clear; rcode.
    let flags = 0x8000 | (q.flags & 0x7900) | 0x0400 | u16::from(rcode & 0x0f);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&q.question);
    for a in answers {
        out.extend_from_slice(&[0xc0, 0x0c]); // the question's name
        let (ty, data) = match a {
            Rdata::A(ip) => (TYPE_A, ip.octets().to_vec()),
            Rdata::Ptr(name) => (TYPE_PTR, encode_name(name).unwrap_or_else(|| vec![0])),
        };
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// A bare error response for a message that could not be parsed as a query,
/// echoing the id when there is one. `None` when there is not even an id.
pub fn error_response(msg: &[u8], rcode: u8) -> Option<Vec<u8>> {
    let id = be16(msg, 0).ok()?;
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&(0x8000u16 | u16::from(rcode)).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend(encode_name(name).unwrap());
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn parses_a_query_and_answers_it() {
        let q = parse_query(&query("Web.Example", TYPE_A)).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0x1234, "web.example", TYPE_A)
        );
        let r = response(
            &q,
            RCODE_NOERROR,
            &[Rdata::A(Ipv4Addr::new(10, 0, 0, 2))],
            60,
        );
        assert_eq!(&r[..4], &[0x12, 0x34, 0x85, 0x00]);
        assert_eq!(be16(&r, 6).unwrap(), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 0, 0, 2]);
    }

    #[test]
    fn rejects_malformed_messages() {
        assert_eq!(parse_query(&[1, 2, 3]), Err(MessageError::Truncated));
        let mut m = query("a", TYPE_A);
        m.truncate(m.len() - 1);
        assert_eq!(parse_query(&m), Err(MessageError::Truncated));
        // A pointer to itself.
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert_eq!(parse_query(&m), Err(MessageError::BadName));
        m[2] = 0x81; // a response, not a query
        assert_eq!(parse_query(&m), Err(MessageError::NotAQuery));
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64];
        m.extend([b'a'; 64]);
        assert_eq!(parse_query(&m), Err(MessageError::BadName));
        assert_eq!(error_response(&[7], RCODE_FORMERR), None);
        assert_eq!(
            error_response(&[0, 7, 1], RCODE_FORMERR).unwrap()[..4],
            [0, 7, 0x80, 1]
        );
    }
}
