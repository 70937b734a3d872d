//! A report as PDF (A4, PDF 1.7) written with `pdf-writer`: the built-in Helvetica
//! fonts (nothing embedded, the text extracts with any reader), the header (organisation,
//! period, generation, chain heads), the controls, the figures, each table row as a block,
//! the notes; every page numbered and naming the chain head.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::{iso, Report};

const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 50.0;
const TOP: f32 = PAGE_HEIGHT - 50.0;
const BOTTOM: f32 = 60.0;

const REGULAR: Name<'static> = Name(b"F1");
const BOLD: Name<'static> = Name(b"F2");

/// How a line is set.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    Title,
    Heading,
    Text,
    Small,
}

impl Style {
    fn font(self) -> (Name<'static>, f32) {
        match self {
            Style::Title => (BOLD, 16.0),
            Style::Heading => (BOLD, 11.0),
            Style::Text => (REGULAR, 9.0),
            Style::Small => (REGULAR, 8.0),
        }
    }

    /// Characters per line: Helvetica averages about half an em; 0.55 leaves room for
    /// wide letters.
    fn chars_per_line(self) -> usize {
        ((PAGE_WIDTH - 2.0 * MARGIN) / (self.font().1 * 0.55)) as usize
    }

    fn leading(self) -> f32 {
        let extra = if matches!(self, Style::Title | Style::Heading) { 8.0 } else { 0.0 };
        self.font().1 * 1.4 + extra
    }
}

/// `s` in WinAnsiEncoding (the fonts' encoding); what it cannot show becomes `?`.
fn winansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            ' '..='~' | '\u{a0}'..='\u{ff}' => c as u8,
            '€' => 0x80,
            '…' => 0x85,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            _ => b'?',
        })
        .collect()
}

/// `text` broken into lines of at most `width` characters, at spaces where it can.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The lines of report `r`, in order.
fn lines(r: &Report) -> Vec<(Style, String)> {
    let mut out: Vec<(Style, String)> = Vec::new();
    let mut put = |style: Style, text: String| {
        out.extend(wrap(&text, style.chars_per_line()).into_iter().map(|l| (style, l)));
    };
    put(Style::Title, format!("Gatehouse — {}", r.title));
    put(Style::Text, format!("Organisation: {} ({}, tenant {})", r.org.name, r.org.slug, r.org.id));
    put(
        Style::Text,
        format!(
            "Period: {} to {} (Unix {} to {})",
            iso(r.period.from),
            iso(r.period.until),
            r.period.from,
            r.period.until
        ),
    );
    put(Style::Text, format!("Generated: {} by {}", iso(r.generated_at), r.generated_by));
    put(Style::Heading, "Audit chain head".into());
    let c = &r.chain_head;
    put(Style::Text, format!("Tenant database: seq {}", c.tenant.seq));
    put(Style::Small, format!("hash {}", c.tenant.hash));
    match &c.directory {
        Some(d) => {
            put(Style::Text, format!("Directory database: seq {}", d.seq));
            put(Style::Small, format!("hash {}", d.hash));
        }
        None => put(Style::Text, "Directory database: no head recorded".into()),
    }
    put(Style::Heading, "Controls evidenced".into());
    for e in &r.controls {
        put(Style::Text, format!("{} {} — {}", e.control.framework, e.control.id, e.control.title));
        put(Style::Small, format!("Evidence: {}", e.evidence));
    }
    put(Style::Heading, "Summary".into());
    for f in &r.summary {
        let v = match &f.value {
            serde_json::Value::Null => "none".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        put(Style::Text, format!("{}: {v}", f.label));
    }
    for t in &r.tables {
        put(Style::Heading, format!("{} ({})", t.title, t.rows.len()));
        if t.rows.is_empty() {
            put(Style::Text, "(none)".into());
        }
        for row in &t.rows {
            put(Style::Text, format!("• {}", row.first().cloned().unwrap_or_default()));
            let rest: Vec<String> = t
                .columns
                .iter()
                .zip(row)
                .skip(1)
                .filter(|(_, v)| !v.is_empty())
                .map(|(c, v)| format!("{c}: {v}"))
                .collect();
            if !rest.is_empty() {
                put(Style::Small, rest.join(" · "));
            }
        }
    }
    if !r.notes.is_empty() {
        put(Style::Heading, "Notes".into());
        for n in &r.notes {
            put(Style::Small, n.clone());
        }
    }
    out
}

/// The lines of each page.
fn paginate(lines: Vec<(Style, String)>) -> Vec<Vec<(Style, String)>> {
    let mut pages = vec![Vec::new()];
    let mut y = TOP;
    for (style, text) in lines {
        if y - style.leading() < BOTTOM {
            pages.push(Vec::new());
            y = TOP;
        }
        y -= style.leading();
        pages.last_mut().expect("one page at least").push((style, text));
    }
    pages
}

/// Render `r` as a PDF document.
pub fn render(r: &Report) -> Vec<u8> {
    let pages = paginate(lines(r));
    let mut pdf = Pdf::new();
    let (catalog, tree, info, regular, bold) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4), Ref::new(5));
    let first_page = 6;
    let page_ids: Vec<Ref> = (0..pages.len()).map(|i| Ref::new(first_page + 2 * i as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(pages.len() as i32);
    pdf.document_info(info)
        .title(TextStr(&format!("{} — {}", r.title, r.org.name)))
        .producer(TextStr("Gatehouse origin"));
    for (id, base) in [(regular, &b"Helvetica"[..]), (bold, &b"Helvetica-Bold"[..])] {
        pdf.type1_font(id).base_font(Name(base)).encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    let count = pages.len();
    for (i, page_lines) in pages.into_iter().enumerate() {
        let (page_id, content_id) = (page_ids[i], Ref::new(page_ids[i].get() + 1));
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT)).parent(tree).contents(content_id);
        page.resources().fonts().pair(REGULAR, regular).pair(BOLD, bold);
        page.finish();
        let mut content = Content::new();
        let mut y = TOP;
        for (style, text) in &page_lines {
            y -= style.leading();
            let (font, size) = style.font();
            content.begin_text().set_font(font, size).next_line(MARGIN, y).show(Str(&winansi(text))).end_text();
        }
        let footer = format!(
            "{} · {} · audit chain head seq {} · page {} of {count}",
            r.org.slug,
            r.kind.name(),
            r.chain_head.tenant.seq,
            i + 1
        );
        content.begin_text().set_font(REGULAR, 7.0).next_line(MARGIN, 30.0).show(Str(&winansi(&footer))).end_text();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_at_spaces_breaks_long_words_and_is_encoded_for_the_fonts() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("abcdefghij k", 4), ["abcd", "efgh", "ij k"]);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(winansi("é — ✓"), vec![0xe9, b' ', 0x97, b' ', b'?']);
        let lines: Vec<_> = (0..200).map(|i| (Style::Text, i.to_string())).collect();
        let pages = paginate(lines);
        assert!(pages.len() > 1 && pages.iter().all(|p| p.len() <= 60));
        assert_eq!(pages.iter().map(Vec::len).sum::<usize>(), 200);
    }
}
