//! `--format` of the listing commands (`ps`, `network ls`, `volume ls`): the
//! subset of docker's Go templates that scripts use. A template is text with
//! `{{.Field}}`, `{{json .Field}}` and `{{json .}}` actions (spaces inside
//! the braces allowed, `\t` and `\n` escapes); a leading `table` adds a
//! header line; `json` alone prints each row as a JSON object on its line.
//! Rows are maps from field name to text, one kind of row per command.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// A `--format` the template subset does not cover.
#[derive(Debug)]
pub enum FormatError {
    /// An unknown field, an action other than `.Field`, `json .Field` or
    /// `json .`, or an unclosed one.
    Invalid {
        /// The template given.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Invalid { template, reason } => {
                write!(f, "invalid --format {template:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for FormatError {}

impl FormatError {
    /// The error class.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        kontti_core::ErrorKind::Invalid
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(&'static str),
    JsonField(&'static str),
    JsonRow,
}

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `None` for the `json` format.
    pieces: Option<Vec<Piece>>,
    /// Whether a header line comes first (`table ...`).
    table: bool,
}

/// Whether `format` asks for the command's own table (no format, or
/// `table` alone).
pub fn is_default(format: Option<&str>) -> bool {
    match format {
        None => true,
        Some(f) => {
            let f = f.trim_matches(' ');
            f.is_empty()
                || f.strip_prefix("table")
                    .is_some_and(|r| r.trim_matches(' ').is_empty())
        }
    }
}

/// One row: field name to its text.
pub type Row = BTreeMap<&'static str, String>;

impl Template {
    /// Parses `format` for rows with the fields `fields` (name, header).
    pub fn parse(
        format: &str,
        fields: &[(&'static str, &'static str)],
    ) -> Result<Template, FormatError> {
        if format == "json" {
            return Ok(Template {
                pieces: None,
                table: false,
            });
        }
        let invalid = |reason: String| FormatError::Invalid {
            template: format.to_owned(),
            reason,
        };
        // as docker: any "table" prefix, then the rest without its spaces
        let (body, table) = match format.strip_prefix("table") {
            Some(rest) => (rest.trim_matches(' '), true),
            None => (format, false),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let field = |name: &str| {
            fields
                .iter()
                .map(|(f, _)| *f)
                .find(|f| *f == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
                    invalid(format!("no field {name:?} (fields: {})", known.join(", ")))
                })
        };
        let mut pieces = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(invalid("unclosed action: missing }}".to_owned()));
            };
            let action = after[..end].trim();
            let words: Vec<&str> = action.split_whitespace().collect();
            pieces.push(match words.as_slice() {
                [f] if f.starts_with('.') && f.len() > 1 => Piece::Field(field(&f[1..])?),
                ["json", "."] => Piece::JsonRow,
                ["json", f] if f.starts_with('.') && f.len() > 1 => {
                    Piece::JsonField(field(&f[1..])?)
                }
                _ => {
                    return Err(invalid(format!(
                        "unsupported action {{{{{action}}}}}: use {{{{.Field}}}}, {{{{json .Field}}}} or {{{{json .}}}}"
                    )));
                }
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template {
            pieces: Some(pieces),
            table,
        })
    }

    /// Prints `rows` (a header first for `table ...`), one line each.
    pub fn print(
        &self,
        out: &mut dyn Write,
        fields: &[(&'static str, &'static str)],
        rows: &[Row],
    ) -> io::Result<()> {
        let Some(pieces) = &self.pieces else {
            for r in rows {
                writeln!(out, "{}", json_row(r))?;
            }
            return Ok(());
        };
        if self.table {
            let header: Row = fields.iter().map(|(f, h)| (*f, (*h).to_owned())).collect();
            writeln!(out, "{}", render(pieces, &header))?;
        }
        for r in rows {
            writeln!(out, "{}", render(pieces, r))?;
        }
        Ok(())
    }
}

fn json_row(r: &Row) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

fn render(pieces: &[Piece], row: &Row) -> String {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => s.push_str(t),
            Piece::Field(f) => s.push_str(row.get(f).map_or("", String::as_str)),
            Piece::JsonField(f) => s.push_str(
                &serde_json::to_string(row.get(f).map_or("", String::as_str)).unwrap_or_default(),
            ),
            Piece::JsonRow => s.push_str(&json_row(row)),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[(&str, &str)] = &[("ID", "NETWORK ID"), ("Name", "NAME")];

    fn row() -> Row {
        BTreeMap::from([("ID", "abc".to_owned()), ("Name", "front".to_owned())])
    }

    fn out(format: &str) -> String {
        let mut buf = Vec::new();
        Template::parse(format, FIELDS)
            .unwrap()
            .print(&mut buf, FIELDS, &[row()])
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn fields_tables_and_json() {
        assert_eq!(out("{{.Name}}:{{ .ID }}"), "front:abc\n");
        assert_eq!(
            out("table {{.ID}}\\t{{.Name}}"),
            "NETWORK ID\tNAME\nabc\tfront\n"
        );
        assert_eq!(out("{{json .}}"), "{\"ID\":\"abc\",\"Name\":\"front\"}\n");
        assert_eq!(out("json"), "{\"ID\":\"abc\",\"Name\":\"front\"}\n");
        assert_eq!(out("{{json .Name}}"), "\"front\"\n");
        assert_eq!(out("table{{.Name}}"), "NAME\nfront\n");
        assert_eq!(out("name: {{.Name}}"), "name: front\n");
        assert!(is_default(None) && is_default(Some("table")) && is_default(Some(" table ")));
        assert!(!is_default(Some("json")) && !is_default(Some("table {{.ID}}")));
    }

    #[test]
    fn bad_templates_name_what_is_wrong() {
        let e = |f: &str| Template::parse(f, FIELDS).unwrap_err().to_string();
        assert!(e("{{.Nope}}").contains("no field \"Nope\" (fields: ID, Name)"));
        assert!(e("{{.Name").contains("unclosed action"));
        assert!(e("{{range .}}").contains("unsupported action {{range .}}"));
        assert!(e("{{.}}").contains("unsupported action"));
    }
}
