use super::*;

fn t(n: i128) -> Timestamp {
    Timestamp(1_795_971_600_000_000_000 + n)
}

fn texts(lines: &[LogLine]) -> Vec<(Stream, bool, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l.stream,
                l.partial,
                String::from_utf8_lossy(&l.text).into_owned(),
            )
        })
        .collect()
}

#[test]
fn lines_become_full_entries_and_partial_lines_wait() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    let mut w = LogWriter::open(&p, None, 1).unwrap();
    w.write(Stream::Stdout, t(1), b"hello\nwor").unwrap();
    w.write(Stream::Stderr, t(2), b"oops\n").unwrap();
    w.write(Stream::Stdout, t(3), b"ld\n\n").unwrap();
    w.write(Stream::Stdout, t(4), b"cut").unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(
        text,
        "2026-11-29T17:00:00.000000001Z stdout F hello\n\
         2026-11-29T17:00:00.000000002Z stderr F oops\n\
         2026-11-29T17:00:00.000000003Z stdout F world\n\
         2026-11-29T17:00:00.000000003Z stdout F \n"
    );
    w.finish(t(5)).unwrap();
    let lines = read_lines(&p, None, None).unwrap();
    assert_eq!(
        texts(&lines),
        vec![
            (Stream::Stdout, false, "hello".into()),
            (Stream::Stderr, false, "oops".into()),
            (Stream::Stdout, false, "world".into()),
            (Stream::Stdout, false, "".into()),
            (Stream::Stdout, true, "cut".into()),
        ]
    );
    assert_eq!(lines[4].time, t(5));
    let mode = std::fs::metadata(&p).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

#[test]
fn long_lines_are_split_into_parts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    let mut w = LogWriter::open(&p, None, 1).unwrap();
    let mut long = vec![b'x'; MAX_LINE * 2 + 10];
    long.push(b'\n');
    // in two writes, cut in the middle of the first part
    w.write(Stream::Stdout, t(1), &long[..100]).unwrap();
    w.write(Stream::Stdout, t(2), &long[100..]).unwrap();
    let lines = read_lines(&p, None, None).unwrap();
    let shape: Vec<(bool, usize)> = lines.iter().map(|l| (l.partial, l.text.len())).collect();
    assert_eq!(shape, vec![(true, MAX_LINE), (true, MAX_LINE), (false, 10)]);
    // exactly MAX_LINE then a newline: one part, then an empty full entry
    let mut exact = vec![b'y'; MAX_LINE];
    exact.push(b'\n');
    w.write(Stream::Stderr, t(3), &exact).unwrap();
    let lines = read_lines(&p, None, None).unwrap();
    let shape: Vec<(bool, usize)> = lines[3..]
        .iter()
        .map(|l| (l.partial, l.text.len()))
        .collect();
    assert_eq!(shape, vec![(true, MAX_LINE), (false, 0)]);
}

#[test]
fn rotation_keeps_max_files_in_all_and_reads_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    // each entry is 31 + 1 + 9 = 41 bytes: two fit in 100
    let mut w = LogWriter::open(&p, Some(100), 3).unwrap();
    for i in 0..9 {
        w.write(Stream::Stdout, t(i), format!("line {i}\n").as_bytes())
            .unwrap();
    }
    assert!(rotated_path(&p, 1).exists());
    assert!(rotated_path(&p, 2).exists());
    assert!(!rotated_path(&p, 3).exists());
    for f in log_files(&p) {
        assert!(
            std::fs::metadata(&f).unwrap().len() <= 100,
            "{}",
            f.display()
        );
    }
    let got: Vec<String> = texts(&read_lines(&p, None, None).unwrap())
        .into_iter()
        .map(|x| x.2)
        .collect();
    assert_eq!(got, ["line 4", "line 5", "line 6", "line 7", "line 8"]);
    // one file: truncated in place
    let q = dir.path().join("one.log");
    let mut w = LogWriter::open(&q, Some(100), 1).unwrap();
    for i in 0..5 {
        w.write(Stream::Stdout, t(i), format!("line {i}\n").as_bytes())
            .unwrap();
    }
    assert!(!rotated_path(&q, 1).exists());
    let got: Vec<String> = texts(&read_lines(&q, None, None).unwrap())
        .into_iter()
        .map(|x| x.2)
        .collect();
    assert_eq!(got, ["line 4"]);
}

#[test]
fn reopening_appends_and_counts_the_existing_size() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    LogWriter::open(&p, Some(100), 2)
        .unwrap()
        .write(Stream::Stdout, t(0), b"a\n")
        .unwrap();
    let mut w = LogWriter::open(&p, Some(100), 2).unwrap();
    w.write(Stream::Stdout, t(1), b"b\n").unwrap();
    assert!(!rotated_path(&p, 1).exists());
    w.write(Stream::Stdout, t(2), b"c\n").unwrap();
    assert!(rotated_path(&p, 1).exists());
    assert_eq!(read_lines(&p, None, None).unwrap().len(), 3);
}

#[test]
fn since_and_tail_select_lines_with_their_parts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    let mut w = LogWriter::open(&p, None, 1).unwrap();
    w.write(Stream::Stdout, t(1), b"one\ntwo\n").unwrap();
    w.write(Stream::Stdout, t(2), &[b'z'; MAX_LINE + 1])
        .unwrap();
    w.write(Stream::Stdout, t(3), b"\nfour\n").unwrap();
    w.write(Stream::Stdout, t(4), b"cut").unwrap();
    w.finish(t(5)).unwrap();
    let all = read_lines(&p, None, None).unwrap();
    assert_eq!(all.len(), 6);
    let last = |n| {
        texts(&read_lines(&p, Some(n), None).unwrap())
            .into_iter()
            .map(|x| x.2.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(last(0), Vec::<usize>::new());
    assert_eq!(last(1), vec![3]);
    assert_eq!(last(2), vec![4, 3]);
    assert_eq!(last(3), vec![MAX_LINE, 1, 4, 3]);
    assert_eq!(last(100).len(), 6);
    let since = read_lines(&p, None, Some(t(3))).unwrap();
    assert_eq!(
        texts(&since).into_iter().map(|x| x.2).collect::<Vec<_>>(),
        ["z", "four", "cut"]
    );
    let both = read_lines(&p, Some(1), Some(t(2))).unwrap();
    assert_eq!(both.len(), 1);
    // a missing log is empty
    assert!(
        read_lines(&dir.path().join("none.log"), None, None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn malformed_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    std::fs::write(
        &p,
        "garbage\n2026-11-29T17:00:00.000000001Z stdin F x\n\
         2026-11-29T17:00:00.000000001Z stdout F:x ok with spaces \n\
         2026-11-29T17:00:00.000000001Z stdout Q no\n\
         2026-11-29T17:00:00.000000002Z stderr P",
    )
    .unwrap();
    let lines = read_lines(&p, None, None).unwrap();
    assert_eq!(
        texts(&lines),
        vec![(Stream::Stdout, false, "ok with spaces ".into())]
    );
    assert_eq!(
        LogLine::parse(b"2026-11-29T17:00:00Z stderr P").map(|l| l.partial),
        Some(true)
    );
    let l = LogLine::parse(b"2026-11-29T17:00:00.5Z stdout F hi").unwrap();
    assert_eq!(LogLine::parse(&l.encode()[..l.encode().len() - 1]), Some(l));
}

#[test]
fn follower_sees_appends_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("container.log");
    let mut f = Follower::at_end(&p).unwrap();
    assert!(f.poll().unwrap().is_empty());
    let mut w = LogWriter::open(&p, Some(100), 3).unwrap();
    w.write(Stream::Stdout, t(0), b"line 0\n").unwrap();
    assert_eq!(f.poll().unwrap().len(), 1);
    let mut seen = Vec::new();
    for i in 1..6 {
        w.write(Stream::Stdout, t(i), format!("line {i}\n").as_bytes())
            .unwrap();
        // a half-written entry is not returned until complete
        seen.extend(f.poll().unwrap());
    }
    let got: Vec<String> = texts(&seen).into_iter().map(|x| x.2).collect();
    assert_eq!(got, ["line 1", "line 2", "line 3", "line 4", "line 5"]);
    // a writer half-way through an entry
    let mut raw = OpenOptions::new().append(true).open(&p).unwrap();
    raw.write_all(b"2026-11-29T17:00:00.000000009Z stdout F ha")
        .unwrap();
    assert!(f.poll().unwrap().is_empty());
    raw.write_all(b"lf\n").unwrap();
    assert_eq!(texts(&f.poll().unwrap())[0].2, "half");
    // a follower started at the end of existing content
    let mut g = Follower::at_end(&p).unwrap();
    assert!(g.poll().unwrap().is_empty());
}

#[test]
fn random_lines_parse_or_are_refused_without_panics() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let valid = b"2026-11-29T17:00:00.123456789Z stdout F hello";
    for _ in 0..5000 {
        let mut line = valid.to_vec();
        // mutate a few bytes of a valid line, or cut it
        for _ in 0..(next() % 4) {
            let i = (next() as usize) % line.len();
            line[i] = next() as u8;
        }
        line.truncate((next() as usize) % (line.len() + 1));
        if let Some(l) = LogLine::parse(&line) {
            // what parses encodes back to a line that parses the same
            let enc = l.encode();
            assert_eq!(LogLine::parse(&enc[..enc.len() - 1]), Some(l));
        }
    }
}
