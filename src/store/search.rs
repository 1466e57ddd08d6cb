//! Full-text search over message bodies: folding, segmentation, the inverted index, queries.
//!
//! Owns: the tables `search_postings` and `search_terms`, the folding and tokenizing rules,
//! `index`/`unindex` (called by `writes` inside the same write transaction as the message
//! change; `unindex` must be given the body exactly as it was indexed) and `search`. Must not:
//! touch any other table, or decide which messages a caller may see; `search` asks the caller
//! through `candidate`, which also supplies the body the tiers are judged on.
//!
//! # Tables
//! | table | key | value |
//! |---|---|---|
//! | `search_postings` | (token, first doc of the block) | the block's other docs, as gaps |
//! | `search_terms` | token | u32: how many docs hold the token |
//!
//! A token's postings are the docs that contain it, in ascending doc order, which is time order
//! (a doc is `(ms << 20) | seq`). They are cut into blocks of at most [`MAX_BLOCK_BYTES`]
//! encoded bytes: the key carries the block's smallest doc, the value the gap to each next doc
//! as two LEB128 numbers, the milliseconds between them and the difference of their sequence
//! numbers (mod 2^20). Sequence numbers count messages as they are stored, so for a common
//! word the second number is small: a posting costs 3–7 bytes, ~5.7 on average in the
//! benchmark (about 8 distinct tokens a message: ~46 bytes of postings a message, ~80 with the
//! B-tree's page slack, plus ~3–7 for the dictionary).
//!
//! Why blocks, not one `(token, doc) → ()` row per posting: a row costs a token copy, an 8 byte
//! doc and 8 bytes of page offsets (~20 bytes a posting before page slack). Blocks stay full:
//! a doc newer than a full block starts a new block instead of splitting it (live messages),
//! and a doc older than a full first block starts a new first block (a history sync going
//! back in time). Docs landing inside a full block split it in half. Removing a doc rewrites
//! its block (and re-keys it when the first doc goes); an empty block is deleted.
//!
//! `search_terms` is the dictionary: each token's document count, used to drive a query from
//! its rarest term and to pick the most frequent expansions of a prefix. A token is deleted
//! when its count drops to zero. `index` and `unindex` keep both tables exact: a posting is
//! counted only when it was really added or removed, so indexing a body twice, or unindexing
//! one that was never indexed, leaves both tables right.
//!
//! # Folding (the same for bodies and queries)
//! Compatibility caseless form (`NFKD(casefold(NFKD(casefold(NFD(s)))))`, Unicode §3.13: full
//! case folding, so `ß`/`ẞ` → `ss`, `ς`/`Σ` → `σ`; compatibility forms, so `ﬁ` → `fi`,
//! fullwidth `Ａ` → `a`, Arabic presentation forms → letters), then drop every combining mark
//! with a non-zero combining class (the diacritics: Latin accents, Greek tonos, Arabic harakat
//! and hamza marks, Hebrew points, Indic nukta/virama, Thai tone marks; so `é` → `e`, `й` → `и`,
//! `أ` → `ا`), variation selectors, emoji skin-tone modifiers, enclosing keycap marks, tag
//! characters, and invisible format characters (soft hyphen, ZWSP/ZWNJ/ZWJ, bidi marks, word
//! joiner, BOM, CGJ, Arabic tatweel), map dotless `ı` to `i` (so `ISTANBUL` finds `ıstanbul`),
//! and recompose to NFC (Hangul syllables come back whole). Folding is idempotent, and
//! `fold(upper(x)) == fold(x)` for letters (both tested).
//!
//! # Tokens
//! The folded text is cut at Unicode word boundaries (UAX #29). A segment with a letter or digit
//! is a word; a segment without one is an emoji token when it holds a pictograph, and is
//! skipped otherwise (spaces, punctuation, other symbols). Emoji are indexed, one token each
//! (ZWJ sequences fall apart into their emoji, flags stay pairs, skin tones are folded away),
//! because people do search for them, and they cost a posting like any word. Words are cut
//! further by script: runs of Han, Bopomofo, Hiragana, Katakana, Hangul, Thai, Lao, Khmer and
//! Myanmar characters (scripts written without spaces, or with particles glued on, as Korean)
//! become overlapping character bigrams plus the run's last character alone (`東京タワー` →
//! `東京 京タ タワ ワー ー`; a one-character run is just that character), so any substring of
//! two or more characters is a phrase of bigrams. Everything else is one token per word; a
//! piece of a mixed-script segment loses the punctuation or marks at its edges (`안녕:ab` →
//! `안녕 녕 ab`), as they would segment on their own. Tokens longer than [`MAX_TOKEN_BYTES`] are
//! cut at a character boundary (a longer word matches any word with the same first 40 bytes).
//! A body's distinct tokens are indexed once each, at most [`MAX_TOKENS_PER_DOC`] of them (the
//! first ones in the text).
//!
//! # Queries and tiers
//! A query is words and `"quoted phrases"` (also `“…”`, `„…“`, `«…»`; an unclosed quote runs to
//! the end), folded and tokenized like bodies. Every term must match (AND), and every quoted
//! phrase must appear, its tokens adjacent and exact, in every tier. A query token matches a
//! text token exactly when they are equal, except that a single CJK-class character matches
//! any token it starts (a run's bigrams and last character hold every character of it), and
//! as a prefix when it starts the text token. Tiers, best first:
//! - `Phrase`: the query's whole token sequence (quoted or not) appears contiguously, exact
//!   (so a one-word query that matches exactly is a `Phrase` hit);
//! - `AllWords`: every query token matches some text token exactly;
//! - `Prefix`: every unquoted query token is a prefix of some text token (`hel wor` finds
//!   `hello world`; quoted tokens still match exactly).
//!
//! Hits are sorted by tier, then newest first. The tiers are judged on the folded body that
//! `candidate` returns ([`matches`] applies the same rule to any body), so a hit's tier never
//! depends on the index alone.
//!
//! # Scans and their bounds
//! Every term gets a cursor over its postings (a union of postings for a prefix, or for a
//! single CJK character), and the cursors are joined newest-first by leapfrogging (each cursor
//! seeks to the largest doc ≤ the current candidate; the rarest term leads), inside the
//! `after`/`before` doc range (docs encode time, so the bounds are doc bounds). Stage 1 joins
//! the exact terms; each joined doc goes to `candidate` and is ranked. It stops once `limit`
//! phrase hits are found (nothing older can outrank them), when the join is exhausted, or
//! [`MAX_PHRASE_HUNT`] docs after the exact tiers filled `limit` (older phrase hits of a
//! multi-word query would still outrank the all-words hits; past that many, they are missed).
//! Stage 2 runs only if fewer than `limit` phrase and all-words hits were found: it joins the
//! prefix expansions, skipping docs stage 1 saw, until the hits fill `limit`. A one-word query
//! thus reads one block and calls `candidate` about `limit` times when the caller's filters
//! accept most messages.
//!
//! A caller filter that rejects most docs (one chat) makes `candidate` the cost; the budgets
//! below bound it, at the price of missing older matches. [`search_within`] avoids that: the
//! caller passes an ordered filter (the chat's timeline) that joins the leapfrog as one more
//! cursor, so only docs of the chat are offered.
//!
//! Bounds, per search: [`MAX_CANDIDATES`] `candidate` calls, [`MAX_BODIES`] bodies judged,
//! [`MAX_BLOCK_READS`] block reads and [`MAX_STEPS`] cursor steps; when one runs out, the
//! search returns what it has ranked so far. A prefix expands to at most [`MAX_EXPANSIONS`]
//! tokens, the most frequent among the first [`MAX_EXPANSION_SCAN`] dictionary entries with
//! that prefix; a query keeps its first [`MAX_QUERY_TOKENS`] tokens, and at most
//! [`MAX_JOIN_TERMS`] of its rarest terms drive the join, the others are checked on the body.

use super::model::{DOC_SEQ_BITS, Doc, doc_floor};
use super::{Context, Result, StoreError};
use caseless::Caseless;
use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableDefinition, TableError,
    WriteTransaction,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use unicode_normalization::char::{
    canonical_combining_class, decompose_canonical, decompose_compatible, is_combining_mark,
};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
use unicode_segmentation::UnicodeSegmentation;

/// (token, first doc of the block) → the gaps to the block's other docs.
pub const POSTINGS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("search_postings");
/// token → number of docs that hold it.
pub const TERMS: TableDefinition<&str, u32> = TableDefinition::new("search_terms");

/// Longest token kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_TOKEN_BYTES: usize = 40;
/// Distinct tokens indexed per message body.
pub const MAX_TOKENS_PER_DOC: usize = 1024;
/// Largest encoded block value, in bytes (about 60–80 postings).
pub const MAX_BLOCK_BYTES: usize = 384;
/// Tokens a prefix (or a single CJK character) expands to.
pub const MAX_EXPANSIONS: usize = 64;
/// Dictionary entries read to expand one prefix.
pub const MAX_EXPANSION_SCAN: usize = 4096;
/// `candidate` calls per search (a call that rejects the doc costs the caller a lookup).
pub const MAX_CANDIDATES: usize = 8192;
/// Bodies judged per search (a body is folded and tokenized: a few µs).
pub const MAX_BODIES: usize = 2048;
/// Docs judged after the exact tiers already fill `limit`, looking for older phrase hits.
pub const MAX_PHRASE_HUNT: usize = 1024;
/// Posting blocks read per search.
pub const MAX_BLOCK_READS: usize = 16_384;
/// Cursor steps (each a binary search in a decoded block, or a `within` call) per search.
pub const MAX_STEPS: usize = 262_144;
/// Query tokens kept (the rest of a longer query is ignored).
pub const MAX_QUERY_TOKENS: usize = 32;
/// Query terms that drive the join (the rarest); the rest are checked on the body.
pub const MAX_JOIN_TERMS: usize = 8;

/// Creates the search tables (called by `schema::init`).
pub fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(POSTINGS).ctx("creating search_postings")?;
    txn.open_table(TERMS).ctx("creating search_terms")?;
    Ok(())
}

/// Adds a message body to the index.
pub fn index(txn: &WriteTransaction, doc: Doc, text: &str) -> Result<()> {
    let folded = fold(text);
    let tokens = doc_tokens(&folded);
    if tokens.is_empty() {
        return Ok(());
    }
    let mut postings = txn.open_table(POSTINGS).ctx("opening search_postings")?;
    let mut terms = txn.open_table(TERMS).ctx("opening search_terms")?;
    for token in tokens {
        if insert_posting(&mut postings, token, doc)? {
            let n = term_count(&terms, token)?;
            terms
                .insert(token, n.saturating_add(1))
                .ctx("updating a search term count")?;
        }
    }
    Ok(())
}

/// Removes a message body (as it was indexed) from the index.
/// Adds many message bodies at once: the same postings as calling [`index`] for each, but every
/// token's new docs are merged into its blocks in one pass (one read and one write per touched
/// block instead of one per posting), and each term count is written once.
pub fn index_many(txn: &WriteTransaction, items: &[(Doc, &str)]) -> Result<()> {
    let mut pairs: Vec<(String, Doc)> = Vec::new();
    for (doc, text) in items {
        let folded = fold(text);
        for token in doc_tokens(&folded) {
            pairs.push((token.to_string(), *doc));
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }
    pairs.sort_unstable();
    pairs.dedup();
    let mut postings = txn.open_table(POSTINGS).ctx("opening search_postings")?;
    let mut terms = txn.open_table(TERMS).ctx("opening search_terms")?;
    let mut start = 0;
    while start < pairs.len() {
        let token = pairs[start].0.as_str();
        let end = start
            + pairs[start..]
                .iter()
                .take_while(|(t, _)| t == token)
                .count();
        let docs: Vec<Doc> = pairs[start..end].iter().map(|(_, d)| *d).collect();
        let added = insert_postings_sorted(&mut postings, token, &docs)?;
        if added > 0 {
            let n = term_count(&terms, token)?;
            terms
                .insert(token, n.saturating_add(added))
                .ctx("updating a search term count")?;
        }
        start = end;
    }
    Ok(())
}

pub fn unindex(txn: &WriteTransaction, doc: Doc, text: &str) -> Result<()> {
    let folded = fold(text);
    let tokens = doc_tokens(&folded);
    if tokens.is_empty() {
        return Ok(());
    }
    let mut postings = txn.open_table(POSTINGS).ctx("opening search_postings")?;
    let mut terms = txn.open_table(TERMS).ctx("opening search_terms")?;
    for token in tokens {
        if remove_posting(&mut postings, token, doc)? {
            let n = term_count(&terms, token)?;
            if n <= 1 {
                terms.remove(token).ctx("removing a search term")?;
            } else {
                terms
                    .insert(token, n - 1)
                    .ctx("updating a search term count")?;
            }
        }
    }
    Ok(())
}

/// A search request.
#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    /// Words and `"quoted phrases"`; every unquoted word also matches as a word prefix (the
    /// `Prefix` tier). See the module doc for the tiers.
    pub text: &'a str,
    /// Only messages at or after this time (ms).
    pub after: Option<u64>,
    /// Only messages at or before this time (ms).
    pub before: Option<u64>,
    pub limit: usize,
}

/// How well a hit matches; better tiers rank first, then newer messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Phrase,
    AllWords,
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub doc: Doc,
    pub tier: Tier,
}

/// Runs a query. `candidate(doc)` returns the message body when the caller's other filters
/// (chat, sender) accept the message, or `None` to skip it.
///
/// A query without any token (empty, or only punctuation) has no hits. See the module doc for
/// the tiers, the scan and its bounds.
pub fn search(
    txn: &ReadTransaction,
    query: &SearchQuery,
    candidate: &mut dyn FnMut(Doc) -> Result<Option<String>>,
) -> Result<Vec<Hit>> {
    search_within(txn, query, None, candidate)
}

/// [`search`], with the caller's own ordered filter joined into the scan: `within(d)` returns
/// the newest doc ≤ `d` the caller accepts (say, from `chat_timeline` for a chat filter: one
/// range lookup), or `None` when there is none. The index then leapfrogs between `within` and
/// the postings, so a filtered query costs about the smaller of the two lists instead of
/// asking `candidate` about every match in every chat. `within` is called with non-increasing
/// `d` during a pass; the prefix pass starts again from the top. `candidate` still has the last
/// word (and supplies the body).
pub fn search_within(
    txn: &ReadTransaction,
    query: &SearchQuery,
    mut within: Option<&mut dyn FnMut(Doc) -> Result<Option<Doc>>>,
    candidate: &mut dyn FnMut(Doc) -> Result<Option<String>>,
) -> Result<Vec<Hit>> {
    let limit = query.limit;
    let parsed = ParsedQuery::parse(query.text);
    let Some((lower, upper)) = doc_bounds(query.after, query.before) else {
        return Ok(Vec::new());
    };
    if limit == 0 || parsed.terms.is_empty() {
        return Ok(Vec::new());
    }
    let Some(postings) = open_read(txn, POSTINGS, "opening search_postings")? else {
        return Ok(Vec::new());
    };
    let Some(terms) = open_read(txn, TERMS, "opening search_terms")? else {
        return Ok(Vec::new());
    };

    let mut budget = Budget::default();
    let mut ranked: [Vec<Doc>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut seen: HashSet<Doc> = HashSet::new();
    // Asks the caller about `doc` and ranks it; false once the budget is spent.
    let mut judge = |doc: Doc, budget: &mut Budget, ranked: &mut [Vec<Doc>; 3]| -> Result<bool> {
        if !budget.take_candidate() {
            return Ok(false);
        }
        if let Some(body) = candidate(doc)? {
            if !budget.take_body() {
                return Ok(false);
            }
            if let Some(tier) = parsed.tier(&body) {
                ranked[tier as usize].push(doc);
            }
        }
        Ok(true)
    };

    // Stage 1: the exact terms.
    let mut exact = Vec::with_capacity(parsed.terms.len());
    for term in &parsed.terms {
        exact.push(if term.cjk_char {
            Union::expand(&terms, &term.text)?
        } else {
            Union::exact(&terms, &term.text)?
        });
    }
    let mut join = Join::new(exact, lower, upper);
    let mut hunted = 0;
    while let Some(doc) = join.next(&postings, within.as_deref_mut(), &mut budget)? {
        seen.insert(doc);
        if !judge(doc, &mut budget, &mut ranked)? {
            break;
        }
        if ranked[Tier::Phrase as usize].len() >= limit {
            break;
        }
        // The page is full; only older phrase hits could still change it.
        if ranked[0].len() + ranked[1].len() >= limit {
            hunted += 1;
            if hunted >= MAX_PHRASE_HUNT {
                break;
            }
        }
    }

    // Stage 2: the prefix expansions, when the exact tiers did not fill the page.
    let found = |r: &[Vec<Doc>; 3]| r.iter().map(Vec::len).sum::<usize>();
    if ranked[0].len() + ranked[1].len() < limit && !budget.exhausted() {
        let mut expanded = Vec::with_capacity(parsed.terms.len());
        let mut widened = false;
        for term in &parsed.terms {
            if term.cjk_char {
                expanded.push(Union::expand(&terms, &term.text)?);
            } else if !term.allow_prefix {
                expanded.push(Union::exact(&terms, &term.text)?);
            } else {
                let u = Union::expand(&terms, &term.text)?;
                widened |= u.lists.iter().any(|l| l.token != term.text);
                expanded.push(u);
            }
        }
        if widened {
            let mut join = Join::new(expanded, lower, upper);
            while found(&ranked) < limit {
                let Some(doc) = join.next(&postings, within.as_deref_mut(), &mut budget)? else {
                    break;
                };
                if seen.insert(doc) && !judge(doc, &mut budget, &mut ranked)? {
                    break;
                }
            }
        }
    }

    let tiers = [Tier::Phrase, Tier::AllWords, Tier::Prefix];
    let mut hits = Vec::with_capacity(limit.min(found(&ranked)));
    for (tier, docs) in tiers.into_iter().zip(ranked) {
        for doc in docs {
            if hits.len() == limit {
                return Ok(hits);
            }
            hits.push(Hit { doc, tier });
        }
    }
    Ok(hits)
}

/// The tier at which `body` matches the query `text` (the rule `search` ranks by), for callers
/// that scan messages themselves, such as one small chat's timeline.
pub fn matches(text: &str, body: &str) -> Option<Tier> {
    let parsed = ParsedQuery::parse(text);
    if parsed.terms.is_empty() {
        return None;
    }
    parsed.tier(body)
}

// ---------------------------------------------------------------------------------------------
// Folding

/// Folds text for matching (see the module doc). Idempotent.
///
/// The same as `NFC(drop(NFKD(casefold(NFKD(casefold(NFD(text)))))))`, computed a character at a
/// time: decomposition and case folding are per character, and the one step that is not,
/// canonical reordering, only reorders marks with a non-zero combining class, which are all
/// dropped. Only the final composition looks across characters, and it is skipped when the
/// quick check says the result is already NFC.
pub fn fold(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            fold_char(c, &mut out);
        }
    }
    if is_nfc_quick(out.chars()) == IsNormalized::Yes {
        out
    } else {
        out.chars().nfc().collect()
    }
}

/// Appends the folded, decomposed form of one character to `out`.
fn fold_char(c: char, out: &mut String) {
    decompose_canonical(c, |c| {
        for c in std::iter::once(c).default_case_fold() {
            decompose_compatible(c, |c| {
                for c in std::iter::once(c).default_case_fold() {
                    decompose_compatible(c, |c| {
                        if !is_ignorable(c) {
                            out.push(if c == 'ı' { 'i' } else { c });
                        }
                    });
                }
            });
        }
    });
}

/// Characters folding drops: diacritics and invisible or presentation-only characters.
fn is_ignorable(c: char) -> bool {
    match c {
        '\u{00AD}' | '\u{034F}' | '\u{0640}' | '\u{180B}'..='\u{180F}' => true,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' => true,
        '\u{20DD}'..='\u{20E4}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' => true,
        '\u{1F3FB}'..='\u{1F3FF}' | '\u{E0000}'..='\u{E0FFF}' => true,
        _ => is_combining_mark(c) && canonical_combining_class(c) != 0,
    }
}

/// Scripts written without spaces between words (or, for Hangul, with particles attached):
/// tokenized as character bigrams.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF // Thai, Lao
        | 0x1000..=0x109F // Myanmar
        | 0x1100..=0x11FF // Hangul Jamo
        | 0x1780..=0x17FF // Khmer
        | 0x19E0..=0x19FF // Khmer symbols
        | 0x2E80..=0x2FDF // CJK and Kangxi radicals
        | 0x3005..=0x3007 // 々 〆 〇
        | 0x3021..=0x3029 // Hangzhou numerals
        | 0x3031..=0x3035 // kana repeat marks
        | 0x3038..=0x303C
        | 0x3040..=0x30FF // Hiragana, Katakana
        | 0x3100..=0x318F // Bopomofo, Hangul compatibility Jamo
        | 0x31A0..=0x31FF // Bopomofo extended, CJK strokes, Katakana extensions
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xA960..=0xA97F // Hangul Jamo extended A
        | 0xA9E0..=0xA9FF // Myanmar extended B
        | 0xAA60..=0xAA7F // Myanmar extended A
        | 0xAC00..=0xD7FF // Hangul syllables, Jamo extended B
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0xFF66..=0xFFDC // halfwidth Katakana and Hangul
        | 0x1B000..=0x1B16F // Kana supplement, extended
        | 0x20000..=0x3FFFF // CJK extensions B and later
    )
}

/// `char::is_alphanumeric`, with the common (folded, so lowercase) letters of the big alphabets
/// answered without the general table walk (the same answers: tested on every char).
fn is_alnum(c: char) -> bool {
    match c as u32 {
        0x30..=0x39 | 0x61..=0x7A | 0x41..=0x5A => true,
        0..=0x7F => false,
        0xDF..=0xF6 | 0xF8..=0x2AF => true, // Latin-1 letters, Latin Extended-A/B, IPA
        0x3B1..=0x3C9 => true,              // Greek
        0x430..=0x45F => true,              // Cyrillic
        0x5D0..=0x5EA => true,              // Hebrew
        0x620..=0x64A => true,              // Arabic
        0x3041..=0x3096 | 0x30A1..=0x30FA => true, // Kana
        0x4E00..=0x9FFF | 0xAC00..=0xD7A3 => true, // Han, Hangul
        _ => c.is_alphanumeric(),
    }
}

/// Pictographs (emoji) that get a token of their own.
fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x231A..=0x23FF
        | 0x25AA..=0x25FE
        | 0x2600..=0x27BF
        | 0x2934..=0x2935
        | 0x2B05..=0x2BFF
        | 0x3030
        | 0x303D
        | 0x1F000..=0x1FAFF
    )
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// One token of folded text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tok<'a> {
    text: &'a str,
    /// The last character of a CJK run of two or more: its character is already in the run's
    /// last bigram, so a query does not need to look it up.
    tail: bool,
}

/// Cuts `s` to at most `MAX_TOKEN_BYTES` at a character boundary.
fn truncate(s: &str) -> &str {
    if s.len() <= MAX_TOKEN_BYTES {
        return s;
    }
    let mut end = MAX_TOKEN_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The tokens of folded text, in text order (see the module doc).
fn tokenize(folded: &str) -> Vec<Tok<'_>> {
    let mut t = Tokenizer {
        folded,
        out: Vec::new(),
        word: None,
        units: Vec::new(),
        run_end: 0,
    };
    for (start, seg) in folded.split_word_bound_indices() {
        if !seg.chars().any(is_alnum) {
            t.flush_word();
            t.flush_run();
            if seg.chars().any(is_emoji) {
                t.out.push(Tok {
                    text: truncate(seg),
                    tail: false,
                });
            }
            continue;
        }
        for (i, c) in seg.char_indices() {
            let (a, b) = (start + i, start + i + c.len_utf8());
            if is_alnum(c) && is_cjk(c) {
                t.flush_word();
                t.units.push(a);
                t.run_end = b;
            } else if is_alnum(c) || t.word.is_some() {
                t.flush_run();
                t.word = Some((t.word.map_or(a, |w| w.0), b));
            } else if !t.units.is_empty() && is_combining_mark(c) {
                // A mark inside a CJK run belongs to the character before it.
                t.run_end = b;
            } else {
                // Anything else (a pictograph carrying a mark, stray punctuation) ends the run.
                t.flush_run();
                if is_emoji(c) {
                    t.out.push(Tok {
                        text: &folded[a..b],
                        tail: false,
                    });
                }
            }
        }
        t.flush_word();
    }
    t.flush_word();
    t.flush_run();
    t.out
}

/// The state of `tokenize`: the word and the CJK run being collected.
struct Tokenizer<'a> {
    folded: &'a str,
    out: Vec<Tok<'a>>,
    /// The word's byte range.
    word: Option<(usize, usize)>,
    /// Where each character of the CJK run starts (with the marks after it, a unit), and where
    /// the run ends.
    units: Vec<usize>,
    run_end: usize,
}

impl<'a> Tokenizer<'a> {
    fn flush_word(&mut self) {
        if let Some((a, b)) = self.word.take() {
            // A piece of a mixed-script segment may start or end with the punctuation that
            // joined it to the other script (`안녕:ab`), or start with a mark that belonged to
            // the other script; alone, those would segment differently, so they go.
            let text = self.folded[a..b]
                .trim_start_matches(|c: char| !is_alnum(c) || is_combining_mark(c))
                .trim_end_matches(|c: char| !is_alnum(c) && !is_combining_mark(c));
            if !text.is_empty() {
                self.out.push(Tok {
                    text: truncate(text),
                    tail: false,
                });
            }
        }
    }

    fn flush_run(&mut self) {
        let (units, end, s) = (&self.units, self.run_end, self.folded);
        match units.len() {
            0 => {}
            1 => self.out.push(Tok {
                text: truncate(&s[units[0]..end]),
                tail: false,
            }),
            n => {
                for w in 0..n - 1 {
                    let stop = units.get(w + 2).copied().unwrap_or(end);
                    self.out.push(Tok {
                        text: truncate(&s[units[w]..stop]),
                        tail: false,
                    });
                }
                self.out.push(Tok {
                    text: truncate(&s[units[n - 1]..end]),
                    tail: true,
                });
            }
        }
        self.units.clear();
    }
}

/// The distinct tokens of a folded body, as indexed.
fn doc_tokens(folded: &str) -> Vec<&str> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for tok in tokenize(folded) {
        if seen.insert(tok.text) {
            out.push(tok.text);
            if out.len() == MAX_TOKENS_PER_DOC {
                break;
            }
        }
    }
    out.sort_unstable();
    out
}

fn is_single_cjk(s: &str) -> bool {
    let mut chars = s.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if is_cjk(c))
}

// ---------------------------------------------------------------------------------------------
// Queries

/// One token of a query.
#[derive(Debug, Clone)]
struct QueryToken {
    text: String,
    quoted: bool,
    tail: bool,
    /// A lone CJK-class character: matches exactly any token it starts.
    cjk_char: bool,
}

impl QueryToken {
    fn exact(&self, t: &str) -> bool {
        if self.cjk_char {
            t.starts_with(self.text.as_str())
        } else {
            t == self.text
        }
    }
    fn prefix(&self, t: &str) -> bool {
        t.starts_with(self.text.as_str())
    }
}

/// A distinct term the join looks up.
#[derive(Debug, Clone)]
struct Term {
    text: String,
    /// No occurrence is quoted (so the prefix tier may expand it).
    allow_prefix: bool,
    cjk_char: bool,
}

#[derive(Debug, Clone)]
struct ParsedQuery {
    /// Every token in query order.
    tokens: Vec<QueryToken>,
    /// Quoted phrases: ranges of `tokens`.
    phrases: Vec<(usize, usize)>,
    /// Distinct non-tail tokens.
    terms: Vec<Term>,
}

const QUOTES: [char; 6] = [
    '"', '\u{201C}', '\u{201D}', '\u{201E}', '\u{00AB}', '\u{00BB}',
];

impl ParsedQuery {
    fn parse(text: &str) -> ParsedQuery {
        let mut tokens = Vec::new();
        let mut phrases = Vec::new();
        for (i, part) in text.split(QUOTES).enumerate() {
            let quoted = i % 2 == 1;
            let start = tokens.len();
            let folded = fold(part);
            for tok in tokenize(&folded) {
                if tokens.len() == MAX_QUERY_TOKENS {
                    break;
                }
                tokens.push(QueryToken {
                    text: tok.text.to_string(),
                    quoted,
                    tail: tok.tail,
                    cjk_char: is_single_cjk(tok.text),
                });
            }
            if quoted && tokens.len() > start {
                phrases.push((start, tokens.len()));
            }
        }
        let mut terms: Vec<Term> = Vec::new();
        for t in tokens.iter().filter(|t| !t.tail) {
            match terms.iter_mut().find(|x| x.text == t.text) {
                Some(x) => x.allow_prefix &= !t.quoted,
                None => terms.push(Term {
                    text: t.text.clone(),
                    allow_prefix: !t.quoted,
                    cjk_char: t.cjk_char,
                }),
            }
        }
        ParsedQuery {
            tokens,
            phrases,
            terms,
        }
    }

    /// The tier at which `body` matches, or `None`.
    fn tier(&self, body: &str) -> Option<Tier> {
        let folded = fold(body);
        let text: Vec<&str> = tokenize(&folded).into_iter().map(|t| t.text).collect();
        for &(a, b) in &self.phrases {
            if !contains_run(&self.tokens[a..b], &text) {
                return None;
            }
        }
        if contains_run(&self.tokens, &text) {
            return Some(Tier::Phrase);
        }
        let words = || self.tokens.iter().filter(|q| !q.tail);
        if words().all(|q| text.iter().any(|t| q.exact(t))) {
            return Some(Tier::AllWords);
        }
        let prefix = |q: &QueryToken, t: &str| if q.quoted { q.exact(t) } else { q.prefix(t) };
        if words().all(|q| text.iter().any(|t| prefix(q, t))) {
            return Some(Tier::Prefix);
        }
        None
    }
}

/// Whether `run` matches (exactly) a contiguous stretch of `text`.
fn contains_run(run: &[QueryToken], text: &[&str]) -> bool {
    if run.is_empty() {
        return true;
    }
    text.windows(run.len())
        .any(|w| run.iter().zip(w).all(|(q, t)| q.exact(t)))
}

/// The doc range `[lower, upper]` for the time bounds, or `None` when it is empty.
fn doc_bounds(after: Option<u64>, before: Option<u64>) -> Option<(Doc, Doc)> {
    let lower = after.map_or(0, doc_floor);
    let upper = match before {
        None => Doc::MAX,
        Some(b) if b >= (u64::MAX >> DOC_SEQ_BITS) => Doc::MAX,
        Some(b) => doc_floor(b + 1) - 1,
    };
    (lower <= upper).then_some((lower, upper))
}

// ---------------------------------------------------------------------------------------------
// Posting blocks

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

const SEQ_MASK: u64 = (1 << DOC_SEQ_BITS) - 1;

/// The gap from doc `a` to a later doc `b`: the milliseconds between them, and the sequence
/// difference (mod 2^20). Messages arrive with consecutive sequence numbers, so a common
/// word's gaps have a small sequence part: 3–5 bytes a gap instead of 6–7 for `b - a`.
fn gap(a: Doc, b: Doc) -> (u64, u64) {
    (
        (b >> DOC_SEQ_BITS) - (a >> DOC_SEQ_BITS),
        (b.wrapping_sub(a)) & SEQ_MASK,
    )
}

fn gap_len(a: Doc, b: Doc) -> usize {
    let (ms, seq) = gap(a, b);
    varint_len(ms) + varint_len(seq)
}

fn encode_block(docs: &[Doc]) -> Vec<u8> {
    let mut out = Vec::with_capacity(docs.len() * 5);
    for w in docs.windows(2) {
        let (ms, seq) = gap(w[0], w[1]);
        put_varint(&mut out, ms);
        put_varint(&mut out, seq);
    }
    out
}

/// Decodes a block into `out` (cleared first): `first`, then each gap added on.
fn decode_block(first: Doc, bytes: &[u8], out: &mut Vec<Doc>) -> Result<()> {
    let corrupt = || StoreError("a search posting block is corrupt".into());
    out.clear();
    out.push(first);
    let mut doc = first;
    let mut rest = bytes;
    while !rest.is_empty() {
        let ms = take_varint(&mut rest).ok_or_else(corrupt)?;
        let seq = take_varint(&mut rest).ok_or_else(corrupt)?;
        let time = (doc >> DOC_SEQ_BITS)
            .checked_add(ms)
            .filter(|&t| t <= u64::MAX >> DOC_SEQ_BITS && seq <= SEQ_MASK)
            .ok_or_else(corrupt)?;
        let next = (time << DOC_SEQ_BITS) | ((doc + seq) & SEQ_MASK);
        if next <= doc {
            return Err(corrupt());
        }
        doc = next;
        out.push(doc);
    }
    Ok(())
}

/// Reads one LEB128 number off the front of `bytes`.
fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7F);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(v);
        }
    }
    None
}

type Postings<'t> = Table<'t, (&'static str, u64), &'static [u8]>;

/// The block of `token` that starts at or before `doc` (key's doc and the value).
fn block_at_or_before(t: &Postings, token: &str, doc: Doc) -> Result<Option<(Doc, Vec<u8>)>> {
    let mut range = t
        .range((token, 0u64)..=(token, doc))
        .ctx("reading search postings")?;
    match range.next_back() {
        None => Ok(None),
        Some(entry) => {
            let (k, v) = entry.ctx("reading search postings")?;
            Ok(Some((k.value().1, v.value().to_vec())))
        }
    }
}

fn put_block(t: &mut Postings, token: &str, first: Doc, value: &[u8]) -> Result<()> {
    t.insert((token, first), value)
        .ctx("writing search postings")?;
    Ok(())
}

fn delete_block(t: &mut Postings, token: &str, first: Doc) -> Result<()> {
    t.remove((token, first)).ctx("removing search postings")?;
    Ok(())
}

/// Adds `doc` to `token`'s postings; false when it was already there.
fn insert_posting(t: &mut Postings, token: &str, doc: Doc) -> Result<bool> {
    let mut docs = Vec::new();
    if let Some((first, bytes)) = block_at_or_before(t, token, doc)? {
        decode_block(first, &bytes, &mut docs)?;
        let pos = match docs.binary_search(&doc) {
            Ok(_) => return Ok(false),
            Err(pos) => pos,
        };
        if pos == docs.len() {
            let last = docs[docs.len() - 1];
            if bytes.len() + gap_len(last, doc) > MAX_BLOCK_BYTES {
                // Newer than a full block: start a new one, so appended blocks stay full.
                put_block(t, token, doc, &[])?;
                return Ok(true);
            }
        }
        docs.insert(pos, doc);
        let encoded = encode_block(&docs);
        if encoded.len() <= MAX_BLOCK_BYTES {
            put_block(t, token, first, &encoded)?;
        } else {
            let (left, right) = docs.split_at(docs.len() / 2);
            put_block(t, token, left[0], &encode_block(left))?;
            put_block(t, token, right[0], &encode_block(right))?;
        }
        return Ok(true);
    }
    // Older than every block of the token (or the token is new).
    let next = {
        let mut range = t
            .range((token, doc)..=(token, Doc::MAX))
            .ctx("reading search postings")?;
        match range.next() {
            None => None,
            Some(entry) => {
                let (k, v) = entry.ctx("reading search postings")?;
                Some((k.value().1, v.value().to_vec()))
            }
        }
    };
    match next {
        None => put_block(t, token, doc, &[])?,
        Some((first, bytes)) => {
            decode_block(first, &bytes, &mut docs)?;
            docs.insert(0, doc);
            let encoded = encode_block(&docs);
            if encoded.len() <= MAX_BLOCK_BYTES {
                delete_block(t, token, first)?;
                put_block(t, token, doc, &encoded)?;
            } else {
                put_block(t, token, doc, &[])?;
            }
        }
    }
    Ok(true)
}

/// One posting block held in memory while a sorted run of docs is merged into it.
struct OpenBlock {
    /// The block's first doc (its key once written).
    first: Doc,
    docs: Vec<Doc>,
    /// `encode_block(&docs).len()`, kept up to date as docs go in.
    bytes: usize,
    /// The key it was read under, if it came from the table.
    stored_as: Option<Doc>,
    /// The next block's first doc in the table: docs at or past it belong elsewhere.
    upper: Option<Doc>,
    dirty: bool,
}

impl OpenBlock {
    fn fresh(doc: Doc, upper: Option<Doc>) -> OpenBlock {
        OpenBlock {
            first: doc,
            docs: vec![doc],
            bytes: 0,
            stored_as: None,
            upper,
            dirty: true,
        }
    }

    fn holds(&self, doc: Doc) -> bool {
        doc >= self.first && self.upper.is_none_or(|u| doc < u)
    }

    /// Inserts `doc` at `pos` (after the first doc), keeping `bytes` right.
    fn insert_at(&mut self, pos: usize, doc: Doc) {
        let prev = self.docs[pos - 1];
        self.bytes += gap_len(prev, doc);
        if let Some(&next) = self.docs.get(pos) {
            self.bytes = self.bytes + gap_len(doc, next) - gap_len(prev, next);
        }
        self.docs.insert(pos, doc);
        self.dirty = true;
    }

    fn flush(self, t: &mut Postings, token: &str) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(old) = self.stored_as.filter(|old| *old != self.first) {
            delete_block(t, token, old)?;
        }
        put_block(t, token, self.first, &encode_block(&self.docs))
    }
}

/// The first key of `token`'s blocks after `after`.
fn next_block_key(t: &Postings, token: &str, after: Doc) -> Result<Option<Doc>> {
    if after == Doc::MAX {
        return Ok(None);
    }
    let mut range = t
        .range((token, after + 1)..=(token, Doc::MAX))
        .ctx("reading search postings")?;
    match range.next() {
        None => Ok(None),
        Some(entry) => Ok(Some(entry.ctx("reading search postings")?.0.value().1)),
    }
}

/// Opens the block `doc` belongs in, inserting `doc` when it goes before every block (the
/// second value says whether it was inserted that way).
fn open_block_for(t: &Postings, token: &str, doc: Doc) -> Result<(OpenBlock, bool)> {
    if let Some((first, bytes)) = block_at_or_before(t, token, doc)? {
        let mut docs = Vec::new();
        decode_block(first, &bytes, &mut docs)?;
        let upper = next_block_key(t, token, first)?;
        let block = OpenBlock {
            first,
            docs,
            bytes: bytes.len(),
            stored_as: Some(first),
            upper,
            dirty: false,
        };
        return Ok((block, false));
    }
    // Older than every block of the token (or the token is new): as `insert_posting` does,
    // join the first block when the result fits, else start a block of its own.
    let next = {
        let mut range = t
            .range((token, doc)..=(token, Doc::MAX))
            .ctx("reading search postings")?;
        match range.next() {
            None => None,
            Some(entry) => {
                let (k, v) = entry.ctx("reading search postings")?;
                Some((k.value().1, v.value().to_vec()))
            }
        }
    };
    let Some((first, bytes)) = next else {
        return Ok((OpenBlock::fresh(doc, None), true));
    };
    let merged = bytes.len() + gap_len(doc, first);
    if merged > MAX_BLOCK_BYTES {
        return Ok((OpenBlock::fresh(doc, Some(first)), true));
    }
    let mut docs = vec![doc];
    let mut rest = Vec::new();
    decode_block(first, &bytes, &mut rest)?;
    docs.extend(rest);
    let upper = next_block_key(t, token, first)?;
    let block = OpenBlock {
        first: doc,
        docs,
        bytes: merged,
        stored_as: Some(first),
        upper,
        dirty: true,
    };
    Ok((block, true))
}

/// Adds ascending `docs` to `token`'s postings with the block rules of `insert_posting`.
/// Returns how many were new.
fn insert_postings_sorted(t: &mut Postings, token: &str, docs: &[Doc]) -> Result<u32> {
    let mut added = 0u32;
    let mut open: Option<OpenBlock> = None;
    for &doc in docs {
        let mut block = match open.take() {
            Some(b) if b.holds(doc) => b,
            other => {
                if let Some(b) = other {
                    b.flush(t, token)?;
                }
                let (b, inserted) = open_block_for(t, token, doc)?;
                if inserted {
                    added += 1;
                    open = Some(b);
                    continue;
                }
                b
            }
        };
        // A held block starts at or before `doc`, so `doc` goes after its first doc.
        let pos = match block.docs.binary_search(&doc) {
            Ok(_) | Err(0) => {
                open = Some(block);
                continue;
            }
            Err(pos) => pos,
        };
        added += 1;
        if pos == block.docs.len() {
            let last = block.docs[block.docs.len() - 1];
            if block.bytes + gap_len(last, doc) > MAX_BLOCK_BYTES {
                // Newer than a full block: start a new one, so appended blocks stay full.
                let upper = block.upper;
                block.flush(t, token)?;
                open = Some(OpenBlock::fresh(doc, upper));
                continue;
            }
        }
        block.insert_at(pos, doc);
        if block.bytes <= MAX_BLOCK_BYTES {
            open = Some(block);
            continue;
        }
        // Split in half; later (larger) docs most likely land in the right half.
        let right = block.docs.split_off(block.docs.len() / 2);
        let right_first = right[0];
        let right_bytes = encode_block(&right).len();
        block.bytes = encode_block(&block.docs).len();
        let upper = block.upper;
        block.upper = Some(right_first);
        block.flush(t, token)?;
        open = Some(OpenBlock {
            first: right_first,
            docs: right,
            bytes: right_bytes,
            stored_as: None,
            upper,
            dirty: true,
        });
    }
    if let Some(b) = open {
        b.flush(t, token)?;
    }
    Ok(added)
}

/// Removes `doc` from `token`'s postings; false when it was not there.
fn remove_posting(t: &mut Postings, token: &str, doc: Doc) -> Result<bool> {
    let Some((first, bytes)) = block_at_or_before(t, token, doc)? else {
        return Ok(false);
    };
    let mut docs = Vec::new();
    decode_block(first, &bytes, &mut docs)?;
    let Ok(pos) = docs.binary_search(&doc) else {
        return Ok(false);
    };
    docs.remove(pos);
    if pos == 0 {
        delete_block(t, token, first)?;
        if let Some(&new_first) = docs.first() {
            put_block(t, token, new_first, &encode_block(&docs))?;
        }
    } else {
        put_block(t, token, first, &encode_block(&docs))?;
    }
    Ok(true)
}

fn term_count(terms: &impl ReadableTable<&'static str, u32>, token: &str) -> Result<u32> {
    Ok(terms
        .get(token)
        .ctx("reading a search term count")?
        .map_or(0, |v| v.value()))
}

fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
    what: &str,
) -> Result<Option<ReadOnlyTable<K, V>>> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e).ctx(what),
    }
}

// ---------------------------------------------------------------------------------------------
// Cursors and the join

type ReadPostings = ReadOnlyTable<(&'static str, u64), &'static [u8]>;

/// What one search has spent.
#[derive(Debug, Default)]
struct Budget {
    candidates: usize,
    bodies: usize,
    block_reads: usize,
    steps: usize,
    out: bool,
}

impl Budget {
    fn exhausted(&self) -> bool {
        self.out
    }
    fn take(used: &mut usize, max: usize, out: &mut bool) -> bool {
        *used += 1;
        *out |= *used > max;
        !*out
    }
    fn take_candidate(&mut self) -> bool {
        Budget::take(&mut self.candidates, MAX_CANDIDATES, &mut self.out)
    }
    fn take_body(&mut self) -> bool {
        Budget::take(&mut self.bodies, MAX_BODIES, &mut self.out)
    }
    fn take_step(&mut self) -> bool {
        Budget::take(&mut self.steps, MAX_STEPS, &mut self.out)
    }
    fn take_block(&mut self) -> bool {
        Budget::take(&mut self.block_reads, MAX_BLOCK_READS, &mut self.out)
    }
}

/// A cursor over one token's postings, moving from new to old.
struct List {
    token: String,
    /// The decoded block holding the cursor (ascending).
    block: Vec<Doc>,
    done: bool,
}

impl List {
    fn new(token: String) -> List {
        List {
            token,
            block: Vec::new(),
            done: false,
        }
    }

    /// The largest doc ≤ `d` and ≥ `lower`. Calls must not increase `d`.
    fn seek_le(
        &mut self,
        t: &ReadPostings,
        d: Doc,
        lower: Doc,
        budget: &mut Budget,
    ) -> Result<Option<Doc>> {
        if self.done || !budget.take_step() {
            return Ok(None);
        }
        if self.block.first().is_none_or(|&first| first > d) {
            if !budget.take_block() {
                self.done = true;
                return Ok(None);
            }
            let token = self.token.as_str();
            let mut range = t
                .range((token, 0u64)..=(token, d))
                .ctx("reading search postings")?;
            match range.next_back() {
                None => {
                    self.done = true;
                    return Ok(None);
                }
                Some(entry) => {
                    let (k, v) = entry.ctx("reading search postings")?;
                    decode_block(k.value().1, v.value(), &mut self.block)?;
                }
            }
        }
        // The block's first doc is ≤ d, so the partition point is at least 1.
        let i = self.block.partition_point(|&x| x <= d);
        match i.checked_sub(1).and_then(|i| self.block.get(i)) {
            Some(&doc) if doc >= lower => Ok(Some(doc)),
            _ => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

/// The union of some tokens' postings (one token for an exact term).
struct Union {
    lists: Vec<List>,
    /// Documents across the lists (from the dictionary), to order the join.
    count: u64,
}

impl Union {
    fn exact(terms: &ReadOnlyTable<&'static str, u32>, token: &str) -> Result<Union> {
        let count = u64::from(term_count(terms, token)?);
        Ok(Union {
            lists: vec![List::new(token.to_string())],
            count,
        })
    }

    /// The most frequent tokens starting with `prefix` (the token itself included).
    fn expand(terms: &ReadOnlyTable<&'static str, u32>, prefix: &str) -> Result<Union> {
        let mut best: BinaryHeap<Reverse<(u32, String)>> = BinaryHeap::new();
        let range = terms.range(prefix..).ctx("reading search terms")?;
        for entry in range.take(MAX_EXPANSION_SCAN) {
            let (k, v) = entry.ctx("reading search terms")?;
            let (token, n) = (k.value(), v.value());
            if !token.starts_with(prefix) {
                break;
            }
            if best.len() < MAX_EXPANSIONS {
                best.push(Reverse((n, token.to_string())));
            } else if best.peek().is_some_and(|Reverse((m, _))| n > *m) {
                best.pop();
                best.push(Reverse((n, token.to_string())));
            }
        }
        let mut count = 0u64;
        let mut lists = Vec::with_capacity(best.len());
        for Reverse((n, token)) in best {
            count += u64::from(n);
            lists.push(List::new(token));
        }
        Ok(Union { lists, count })
    }

    fn seek_le(
        &mut self,
        t: &ReadPostings,
        d: Doc,
        lower: Doc,
        budget: &mut Budget,
    ) -> Result<Option<Doc>> {
        let mut best = None;
        for list in &mut self.lists {
            if let Some(doc) = list.seek_le(t, d, lower, budget)? {
                best = best.max(Some(doc));
            }
        }
        Ok(best)
    }
}

/// The caller's ordered filter: the newest doc ≤ d it accepts.
type Within<'a, 'f> = Option<&'a mut (dyn FnMut(Doc) -> Result<Option<Doc>> + 'f)>;

/// The docs in every union (and accepted by `within`), newest first: a leapfrog join.
struct Join {
    unions: Vec<Union>,
    lower: Doc,
    /// The next doc to look at or below; `None` once done.
    target: Option<Doc>,
}

impl Join {
    fn new(mut unions: Vec<Union>, lower: Doc, upper: Doc) -> Join {
        unions.sort_by_key(|u| u.count);
        unions.truncate(MAX_JOIN_TERMS);
        let target = (!unions.is_empty()).then_some(upper);
        Join {
            unions,
            lower,
            target,
        }
    }

    /// Cursor `i` (the `within` filter first, if any) seeks to the largest doc ≤ `d`.
    fn seek(
        &mut self,
        i: usize,
        t: &ReadPostings,
        within: &mut Within<'_, '_>,
        d: Doc,
        budget: &mut Budget,
    ) -> Result<Option<Doc>> {
        let i = match within {
            Some(within) if i == 0 => {
                if !budget.take_step() {
                    return Ok(None);
                }
                return Ok(within(d)?.filter(|&x| x <= d && x >= self.lower));
            }
            Some(_) => i - 1,
            None => i,
        };
        self.unions[i].seek_le(t, d, self.lower, budget)
    }

    fn next(
        &mut self,
        t: &ReadPostings,
        mut within: Within<'_, '_>,
        budget: &mut Budget,
    ) -> Result<Option<Doc>> {
        let Some(target) = self.target else {
            return Ok(None);
        };
        let n = self.unions.len() + usize::from(within.is_some());
        let Some(mut d) = self.seek(0, t, &mut within, target, budget)? else {
            self.target = None;
            return Ok(None);
        };
        let mut agreed = 1;
        let mut i = 1 % n;
        while agreed < n {
            match self.seek(i, t, &mut within, d, budget)? {
                None => {
                    self.target = None;
                    return Ok(None);
                }
                Some(x) if x == d => agreed += 1,
                Some(x) => {
                    d = x;
                    agreed = 1;
                }
            }
            i = (i + 1) % n;
        }
        self.target = d.checked_sub(1).filter(|&next| next >= self.lower);
        Ok(Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::doc_time;
    use proptest::prelude::*;
    use redb::{Database, ReadableDatabase};
    use std::collections::{BTreeSet, HashMap};
    use std::path::PathBuf;

    /// A database in the temp dir, deleted on drop.
    struct TempDb {
        db: Option<Database>,
        path: PathBuf,
    }

    impl TempDb {
        fn new(name: &str) -> TempDb {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "wams-search-{name}-{}-{n}.redb",
                std::process::id()
            ));
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            create_tables(&txn).unwrap();
            txn.commit().unwrap();
            TempDb { db: Some(db), path }
        }
        fn db(&self) -> &Database {
            self.db.as_ref().unwrap()
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            drop(self.db.take());
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn mem_db() -> Database {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let txn = db.begin_write().unwrap();
        create_tables(&txn).unwrap();
        txn.commit().unwrap();
        db
    }

    fn doc(ts: u64, seq: u64) -> Doc {
        doc_floor(ts) | seq
    }

    /// A corpus: docs and bodies, indexed.
    struct Corpus {
        bodies: HashMap<Doc, String>,
    }

    impl Corpus {
        fn new(db: &Database, docs: &[(Doc, &str)]) -> Corpus {
            let txn = db.begin_write().unwrap();
            for &(d, body) in docs {
                index(&txn, d, body).unwrap();
            }
            txn.commit().unwrap();
            Corpus {
                bodies: docs.iter().map(|&(d, b)| (d, b.to_string())).collect(),
            }
        }

        fn find(&self, db: &Database, text: &str) -> Vec<Hit> {
            self.find_in(db, text, None, None, 50)
        }

        fn find_in(
            &self,
            db: &Database,
            text: &str,
            after: Option<u64>,
            before: Option<u64>,
            limit: usize,
        ) -> Vec<Hit> {
            let txn = db.begin_read().unwrap();
            let q = SearchQuery {
                text,
                after,
                before,
                limit,
            };
            search(&txn, &q, &mut |d| Ok(self.bodies.get(&d).cloned())).unwrap()
        }
    }

    fn docs_of(hits: &[Hit]) -> Vec<Doc> {
        hits.iter().map(|h| h.doc).collect()
    }

    /// Every posting of every token, by reading the blocks.
    fn all_postings(db: &Database) -> PostingSet {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(POSTINGS).unwrap();
        let mut out = BTreeSet::new();
        let mut docs = Vec::new();
        for e in t.range::<(&str, u64)>(..).unwrap() {
            let (k, v) = e.unwrap();
            let (token, first) = k.value();
            decode_block(first, v.value(), &mut docs).unwrap();
            assert!(v.value().len() <= MAX_BLOCK_BYTES);
            for &d in &docs {
                assert!(out.insert((token.to_string(), d)), "duplicate posting");
            }
        }
        out
    }

    fn all_terms(db: &Database) -> TermSet {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(TERMS).unwrap();
        t.range::<&str>(..)
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value().to_string(), v.value())
            })
            .collect()
    }

    type PostingSet = BTreeSet<(String, Doc)>;
    type TermSet = BTreeSet<(String, u32)>;

    /// The postings and terms `bodies` should produce.
    fn expected_index(bodies: &HashMap<Doc, String>) -> (PostingSet, TermSet) {
        let mut postings = BTreeSet::new();
        let mut counts: HashMap<String, u32> = HashMap::new();
        for (&d, body) in bodies {
            let folded = fold(body);
            for t in doc_tokens(&folded) {
                postings.insert((t.to_string(), d));
                *counts.entry(t.to_string()).or_default() += 1;
            }
        }
        (postings, counts.into_iter().collect())
    }

    #[test]
    fn folding_rules() {
        for (a, b) in [
            ("СПАСИБО", "спасибо"),
            ("STRASSE", "straße"),
            ("Straße", "STRASSE"),
            ("ẞ", "ss"),
            ("café", "cafe"),
            ("CAFÉ", "cafe"),
            ("naïve", "naive"),
            ("Ångström", "angstrom"),
            ("\u{212B}ngstr\u{00F6}m", "angstrom"),
            ("ΟΔΟΣ", "οδοσ"),
            ("οδός", "οδοσ"),
            ("οδος", "οδοσ"),
            ("مُحَمَّد", "محمد"),
            ("أحمد", "احمد"),
            ("ｆｕｌｌ", "full"),
            ("ﬁne", "fine"),
            ("ISTANBUL", "ıstanbul"),
            ("İstanbul", "istanbul"),
            ("👍🏽", "👍"),
            ("❤️", "❤"),
            ("soft\u{00AD}hyphen", "softhyphen"),
            ("\u{200F}שָׁלוֹם", "שלום"),
            ("안녕하세요", "안녕하세요"),
        ] {
            assert_eq!(fold(a), fold(b), "{a} vs {b}");
        }
        assert_eq!(fold("Hello World"), "hello world");
    }

    fn texts(s: &str) -> Vec<String> {
        let f = fold(s);
        tokenize(&f)
            .into_iter()
            .map(|t| t.text.to_string())
            .collect()
    }

    #[test]
    fn tokenizing_rules() {
        assert_eq!(
            texts("Hello, world! It's 3.14"),
            ["hello", "world", "it's", "3.14"]
        );
        assert_eq!(
            texts("東京タワーに"),
            ["東京", "京タ", "タワ", "ワー", "ーに", "に"]
        );
        assert_eq!(texts("東 京"), ["東", "京"]);
        assert_eq!(texts("abc안녕"), ["abc", "안녕", "녕"]);
        assert_eq!(texts("ok 👍🏽👍 !!"), ["ok", "👍", "👍"]);
        assert_eq!(texts("👨‍👩‍👧"), ["👨", "👩", "👧"]);
        assert_eq!(texts("... --- ???"), Vec::<String>::new());
        let long = "a".repeat(100);
        assert_eq!(texts(&long), ["a".repeat(MAX_TOKEN_BYTES)]);
        let long = "é".repeat(30);
        assert_eq!(texts(&long), ["e".repeat(30)]);
        let long = "я".repeat(30);
        assert_eq!(texts(&long), ["я".repeat(20)]);
    }

    /// `fold` as the module doc states it, one normalization pass after another.
    fn fold_reference(text: &str) -> String {
        text.chars()
            .nfd()
            .default_case_fold()
            .nfkd()
            .default_case_fold()
            .nfkd()
            .filter(|&c| !is_ignorable(c))
            .map(|c| if c == 'ı' { 'i' } else { c })
            .nfc()
            .collect()
    }

    #[test]
    fn is_alnum_is_is_alphanumeric() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            assert_eq!(is_alnum(c), c.is_alphanumeric(), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn fold_matches_the_reference_on_every_char() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(fold(&s), fold_reference(&s), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn fold_is_idempotent_on_every_char() {
        let mut bad = Vec::new();
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let s = c.to_string();
            let once = fold(&s);
            if fold(&once) != once {
                bad.push(c);
            }
        }
        assert!(
            bad.is_empty(),
            "not idempotent: {:?}",
            &bad[..bad.len().min(20)]
        );
    }

    #[test]
    fn multilingual_fixtures() {
        let tmp = TempDb::new("fixtures");
        let db = tmp.db();
        let corpus: &[(Doc, &str)] = &[
            (doc(1_000, 1), "Meet me at the café at noon"),
            (doc(2_000, 1), "She is so naïve"),
            (doc(3_000, 1), "Ångström units are tiny"),
            (doc(4_000, 1), "Die Straße ist lang"),
            (doc(5_000, 1), "СПАСИБО за помощь"),
            (doc(6_000, 1), "ΟΔΟΣ Αθηνάς"),
            (doc(7_000, 1), "μια οδός"),
            (doc(8_000, 1), "مُحَمَّد رسول"),
            (doc(9_000, 1), "東京タワーに行きました"),
            (doc(10_000, 1), "안녕하세요 여러분"),
            (doc(11_000, 1), "great job 👍🏽"),
            (doc(12_000, 1), "❤️ love it"),
            (doc(13_000, 1), "ıstanbul trip"),
            (doc(14_000, 1), "ｆｕｌｌｗｉｄｔｈ text"),
            (doc(15_000, 1), "北京大学"),
        ];
        let c = Corpus::new(db, corpus);
        let d = |i: usize| corpus[i - 1].0;
        let table: &[(&str, &[usize])] = &[
            ("cafe", &[1]),
            ("CAFÉ", &[1]),
            ("café", &[1]),
            ("caf", &[1]),
            ("naive", &[2]),
            ("NAÏVE", &[2]),
            ("angstrom", &[3]),
            ("ÅNGSTRÖM", &[3]),
            ("STRASSE", &[4]),
            ("strasse", &[4]),
            ("Straße", &[4]),
            ("\"die straße\"", &[4]),
            ("\"straße die\"", &[]),
            ("спасибо", &[5]),
            ("Спасибо", &[5]),
            ("οδος", &[7, 6]),
            ("ΟΔΟΣ", &[7, 6]),
            ("οδός", &[7, 6]),
            ("οδοςάθηνας", &[]),
            ("αθηνας", &[6]),
            ("محمد", &[8]),
            ("مُحَمَّد", &[8]),
            ("東京", &[9]),
            ("タワー", &[9]),
            ("東京タワー", &[9]),
            ("東", &[9]),
            ("京", &[15, 9]),
            ("京都", &[]),
            ("北京", &[15]),
            ("大学", &[15]),
            ("안녕", &[10]),
            ("하세요", &[10]),
            ("여러분", &[10]),
            ("👍", &[11]),
            ("👍🏿", &[11]),
            ("❤", &[12]),
            ("ISTANBUL", &[13]),
            ("istanbul", &[13]),
            ("fullwidth", &[14]),
            ("FULLWIDTH", &[14]),
            ("", &[]),
            ("!!!", &[]),
            ("nothing", &[]),
        ];
        for &(query, want) in table {
            let got = docs_of(&c.find(db, query));
            let want: Vec<Doc> = want.iter().map(|&i| d(i)).collect();
            assert_eq!(got, want, "query {query:?}");
        }
        // A single CJK character matches exactly (not as a prefix).
        assert_eq!(c.find(db, "東")[0].tier, Tier::Phrase);
        assert_eq!(c.find(db, "東京")[0].tier, Tier::Phrase);
        assert_eq!(c.find(db, "caf")[0].tier, Tier::Prefix);
    }

    #[test]
    fn tiers_rank_before_age() {
        let tmp = TempDb::new("tiers");
        let db = tmp.db();
        let corpus: &[(Doc, &str)] = &[
            (doc(1_000, 1), "hello world"),
            (doc(2_000, 1), "the world says hello"),
            (doc(3_000, 1), "hello worldwide"),
            (doc(4_000, 1), "hello there world"),
            (doc(5_000, 1), "nothing here"),
            (doc(5_000, 2), "Hello, World!"),
        ];
        let c = Corpus::new(db, corpus);
        let d = |i: usize| corpus[i - 1].0;
        let hits = c.find(db, "hello world");
        assert_eq!(
            hits,
            vec![
                Hit {
                    doc: d(6),
                    tier: Tier::Phrase
                },
                Hit {
                    doc: d(1),
                    tier: Tier::Phrase
                },
                Hit {
                    doc: d(4),
                    tier: Tier::AllWords
                },
                Hit {
                    doc: d(2),
                    tier: Tier::AllWords
                },
                Hit {
                    doc: d(3),
                    tier: Tier::Prefix
                },
            ]
        );
        assert_eq!(
            docs_of(&c.find_in(db, "hello world", None, None, 2)),
            [d(6), d(1)]
        );
        assert_eq!(
            docs_of(&c.find_in(db, "hello world", None, None, 3)),
            [d(6), d(1), d(4)]
        );
        // Time bounds are inclusive.
        assert_eq!(
            docs_of(&c.find_in(db, "hello world", Some(2_000), Some(3_000), 10)),
            [d(2), d(3)]
        );
        assert_eq!(
            docs_of(&c.find_in(db, "hello", Some(5_000), None, 10)),
            [d(6)]
        );
        assert_eq!(
            docs_of(&c.find_in(db, "hello", None, Some(1_000), 10)),
            [d(1)]
        );
        assert!(
            c.find_in(db, "hello", Some(3_001), Some(3_999), 10)
                .is_empty()
        );
        assert!(
            c.find_in(db, "hello", Some(4_000), Some(3_000), 10)
                .is_empty()
        );
        // Quoted phrases are required in every tier.
        assert_eq!(docs_of(&c.find(db, "\"hello world\"")), [d(6), d(1)]);
        let hits = c.find(db, "\"world\" hel");
        assert_eq!(docs_of(&hits), [d(6), d(4), d(2), d(1)]);
        assert!(hits.iter().all(|h| h.tier == Tier::Prefix));
        // Prefixes.
        let hits = c.find(db, "hel wor");
        assert_eq!(docs_of(&hits), [d(6), d(4), d(3), d(2), d(1)]);
        assert!(hits.iter().all(|h| h.tier == Tier::Prefix));
        assert_eq!(
            docs_of(&c.find(db, "world hello")),
            [d(6), d(4), d(2), d(1), d(3)]
        );
        assert_eq!(c.find(db, "world hello")[0].tier, Tier::AllWords);
        assert_eq!(matches("hello world", "Hello  World!"), Some(Tier::Phrase));
        assert_eq!(matches("hello world", "world hello"), Some(Tier::AllWords));
        assert_eq!(matches("hello wo", "hello world"), Some(Tier::Prefix));
        assert_eq!(matches("hello", "goodbye"), None);
        let long = "hello ".repeat(1000) + "absent";
        // "absent" is past the token cap, so it is not required.
        assert_eq!(matches(&long, "hello"), Some(Tier::AllWords));
    }

    #[test]
    fn candidate_filters_and_limit() {
        let db = mem_db();
        let corpus: Vec<(Doc, String)> = (0..300)
            .map(|i| (doc(1_000 + i, 0), format!("ping {i}")))
            .collect();
        let refs: Vec<(Doc, &str)> = corpus.iter().map(|(d, b)| (*d, b.as_str())).collect();
        let c = Corpus::new(&db, &refs);
        let hits = c.find_in(&db, "ping", None, None, 20);
        let want: Vec<Doc> = corpus.iter().rev().take(20).map(|(d, _)| *d).collect();
        assert_eq!(docs_of(&hits), want);
        // Only even timestamps accepted.
        let txn = db.begin_read().unwrap();
        let q = SearchQuery {
            text: "PING",
            after: None,
            before: None,
            limit: 5,
        };
        let hits = search(&txn, &q, &mut |d| {
            Ok((doc_time(d) % 2 == 0).then(|| c.bodies[&d].clone()))
        })
        .unwrap();
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| doc_time(h.doc) % 2 == 0));
        assert!(hits.windows(2).all(|w| w[0].doc > w[1].doc));
        // Errors from the callback come back.
        let err = search(&txn, &q, &mut |_| Err(StoreError("boom".into()))).unwrap_err();
        assert_eq!(err.0, "boom");
    }

    #[test]
    fn unindex_and_reindex() {
        let tmp = TempDb::new("unindex");
        let db = tmp.db();
        let corpus: &[(Doc, &str)] = &[
            (doc(1_000, 1), "hello world"),
            (doc(2_000, 1), "the world says hello"),
            (doc(3_000, 1), "東京タワー 👍"),
        ];
        let mut c = Corpus::new(db, corpus);
        let d = |i: usize| corpus[i - 1].0;
        // Delete 1.
        let txn = db.begin_write().unwrap();
        unindex(&txn, d(1), "hello world").unwrap();
        txn.commit().unwrap();
        c.bodies.remove(&d(1));
        assert_eq!(docs_of(&c.find(db, "hello")), [d(2)]);
        // Edit 2: the old text no longer finds it, the new text does.
        let txn = db.begin_write().unwrap();
        unindex(&txn, d(2), "the world says hello").unwrap();
        index(&txn, d(2), "goodbye moon").unwrap();
        txn.commit().unwrap();
        c.bodies.insert(d(2), "goodbye moon".into());
        assert!(c.find(db, "hello").is_empty());
        assert!(c.find(db, "says").is_empty());
        assert_eq!(docs_of(&c.find(db, "goodbye")), [d(2)]);
        assert_eq!(docs_of(&c.find(db, "moo")), [d(2)]);
        // Unindexing text that was never indexed, or twice, changes nothing.
        let txn = db.begin_write().unwrap();
        unindex(&txn, d(2), "something else entirely").unwrap();
        unindex(&txn, d(1), "hello world").unwrap();
        index(&txn, d(2), "goodbye moon").unwrap();
        txn.commit().unwrap();
        let (postings, terms) = expected_index(&c.bodies);
        assert_eq!(all_postings(db), postings);
        assert_eq!(all_terms(db), terms);
        // Removing everything leaves the tables empty.
        let txn = db.begin_write().unwrap();
        for (&d, body) in &c.bodies {
            unindex(&txn, d, body).unwrap();
        }
        txn.commit().unwrap();
        assert!(all_postings(db).is_empty());
        assert!(all_terms(db).is_empty());
    }

    #[test]
    fn corrupt_blocks_are_errors() {
        let mut out = Vec::new();
        assert!(decode_block(5, &[0x80], &mut out).is_err());
        assert!(decode_block(5, &[1], &mut out).is_err());
        // A gap of nothing, or one that goes back.
        assert!(decode_block(5, &[0, 0], &mut out).is_err());
        assert!(decode_block(doc(9, 5), &[0, 0xFF, 0xFF, 0x3F], &mut out).is_err());
        assert!(decode_block(doc(u64::MAX >> 20, 0), &[1, 0], &mut out).is_err());
        assert!(decode_block(5, &[0xFF; 11], &mut out).is_err());
        assert!(decode_block(5, &[0, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], &mut out).is_err());
        let docs = [
            doc(7, 5),
            doc(7, 6),
            doc(8, 0xFFFFF),
            doc(9, 3),
            doc(1 << 40, 0),
        ];
        decode_block(docs[0], &encode_block(&docs), &mut out).unwrap();
        assert_eq!(out, docs);
        assert_eq!(encode_block(&docs[..2]), [0, 1]);
        assert_eq!(gap_len(docs[2], docs[3]), 2);
        for v in [0u64, 1, 127, 128, 1 << 40, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u64),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u64..400).prop_map(Op::Add),
            1 => (0u64..400).prop_map(Op::Remove),
        ]
    }

    fn letters() -> impl Strategy<Value = String> {
        let ranges = prop_oneof![
            proptest::char::range('A', 'z'),
            proptest::char::range('\u{00C0}', '\u{024F}'),
            proptest::char::range('\u{0370}', '\u{03FF}'),
            proptest::char::range('\u{0400}', '\u{052F}'),
            proptest::char::range('\u{0531}', '\u{0587}'),
            proptest::char::range('\u{1E00}', '\u{1FFF}'),
        ];
        proptest::collection::vec(ranges, 0..12).prop_map(|v| {
            v.into_iter()
                .filter(|&c| c.is_alphabetic() && !is_combining_mark(c))
                .collect()
        })
    }

    fn mixed_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(vec![
                    "hello",
                    "World",
                    "café",
                    "STRASSE",
                    "straße",
                    "ΟΔΟΣ",
                    "οδός",
                    "спасибо",
                    "東京",
                    "タワー",
                    "안녕하세요",
                    "مُحَمَّد",
                    "👍🏽",
                    " ",
                    ", ",
                    "\"",
                    "3.14",
                ])
                .prop_map(String::from),
                "[a-zà-ÿ]{1,50}",
                "\\PC{1,4}",
            ],
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    /// A quick benchmark: `cargo test --release --lib store::search::tests::bench -- --ignored
    /// --nocapture` (`BENCH_N` messages, default 200,000, over 2,000 chats; `BENCH_ORDER=shuffled`
    /// indexes them out of time order, as a history sync may).
    #[test]
    #[ignore]
    fn bench_search() {
        use redb::ReadableTableMetadata;
        use std::time::{Duration, Instant};
        const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bench_messages");
        const TIMELINE: TableDefinition<(u32, u64), ()> = TableDefinition::new("bench_timeline");
        let n: usize = std::env::var("BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let shuffled = std::env::var("BENCH_ORDER").is_ok_and(|v| v == "shuffled");
        let chats = 2_000u32;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rng = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // A Zipf vocabulary of 50,000 words, some of them not ASCII.
        let syllables = [
            "ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "an", "el", "or", "bu", "zé", "ün",
            "пр", "ст",
        ];
        let vocab: Vec<String> = (0..50_000u64)
            .map(|mut i| {
                let mut w = String::new();
                loop {
                    w.push_str(syllables[(i % 16) as usize]);
                    i /= 16;
                    if i == 0 {
                        break;
                    }
                }
                w
            })
            .collect();
        let mut cdf = Vec::with_capacity(vocab.len());
        let mut acc = 0.0f64;
        for r in 1..=vocab.len() {
            acc += 1.0 / (r as f64).powf(1.05);
            cdf.push(acc);
        }
        let total = acc;
        let word = |rng: &mut dyn FnMut() -> u64| {
            let x = (rng() as f64 / u64::MAX as f64) * total;
            cdf.partition_point(|&c| c < x).min(vocab.len() - 1)
        };
        let mut msgs: Vec<(Doc, u32, String)> = Vec::with_capacity(n);
        let mut ts = 1_600_000_000_000u64;
        for i in 0..n {
            ts += rng() % 120_000;
            let len = 1 + (rng() % 6 + rng() % 6 + rng() % 6) as usize;
            let mut body = String::new();
            for j in 0..len {
                if j > 0 {
                    body.push(' ');
                }
                let w = &vocab[word(&mut rng)];
                if rng() % 10 == 0 {
                    body.push_str(&w.to_uppercase());
                } else {
                    body.push_str(w);
                }
            }
            match rng() % 20 {
                0 => body.push_str(&format!(" {}", rng() % 1_000_000)),
                1 => body.push_str(" 👍🏽"),
                2 => body.push_str(", ok!"),
                _ => {}
            }
            msgs.push((
                doc(ts, i as u64 & 0xFFFFF),
                (rng() % u64::from(chats)) as u32,
                body,
            ));
        }
        let tmp = TempDb::new("bench");
        let db = tmp.db();
        let mut order: Vec<usize> = (0..n).collect();
        if shuffled {
            for i in (1..n).rev() {
                order.swap(i, (rng() % (i as u64 + 1)) as usize);
            }
        }
        let started = Instant::now();
        for chunk in order.chunks(1_000) {
            let txn = db.begin_write().unwrap();
            {
                let mut bodies = txn.open_table(BODIES).unwrap();
                let mut timeline = txn.open_table(TIMELINE).unwrap();
                for &i in chunk {
                    let (d, chat, body) = &msgs[i];
                    timeline.insert((*chat, *d), ()).unwrap();
                    let mut row = chat.to_le_bytes().to_vec();
                    row.extend_from_slice(body.as_bytes());
                    bodies.insert(*d, row.as_slice()).unwrap();
                    index(&txn, *d, body).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let took = started.elapsed();
        let txn = db.begin_read().unwrap();
        let (p, t, b) = (
            txn.open_table(POSTINGS).unwrap().stats().unwrap(),
            txn.open_table(TERMS).unwrap().stats().unwrap(),
            txn.open_table(BODIES).unwrap().stats().unwrap(),
        );
        let bytes =
            |s: &redb::TableStats| s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes();
        let postings_count: usize = msgs
            .iter()
            .map(|(_, _, b)| doc_tokens(&fold(b)).len())
            .sum();
        let terms_count = txn.open_table(TERMS).unwrap().len().unwrap();
        println!(
            "indexed {n} messages ({}) in {:.1?} ({:.0}/s); {postings_count} postings ({:.1}/msg), {terms_count} terms",
            if shuffled {
                "shuffled"
            } else {
                "in time order"
            },
            took,
            n as f64 / took.as_secs_f64(),
            postings_count as f64 / n as f64,
        );
        println!(
            "bytes/msg: postings {:.1} (stored {:.1}, metadata {:.1}, fragmented {:.1}), terms {:.1}; search total {:.1}; bench bodies table {:.1}; file {:.1}",
            bytes(&p) as f64 / n as f64,
            p.stored_bytes() as f64 / n as f64,
            p.metadata_bytes() as f64 / n as f64,
            p.fragmented_bytes() as f64 / n as f64,
            bytes(&t) as f64 / n as f64,
            (bytes(&p) + bytes(&t)) as f64 / n as f64,
            bytes(&b) as f64 / n as f64,
            std::fs::metadata(&tmp.path).unwrap().len() as f64 / n as f64,
        );

        // The caller's candidate: read the row, check the chat, return the body.
        let bodies = txn.open_table(BODIES).unwrap();
        let timeline = txn.open_table(TIMELINE).unwrap();
        // `use_within`: join the chat's timeline (as a caller with a chat filter would).
        let run = |label: &str, queries: &[(String, Option<u32>)], use_within: bool| {
            let mut times = Vec::with_capacity(queries.len());
            let mut hits_total = 0;
            let mut calls_total = 0;
            for (text, chat) in queries {
                let mut calls = 0;
                let q = SearchQuery {
                    text,
                    after: None,
                    before: None,
                    limit: 20,
                };
                let t0 = Instant::now();
                let mut within = |d: Doc| -> Result<Option<Doc>> {
                    let Some(c) = *chat else { return Ok(Some(d)) };
                    let mut r = timeline.range((c, 0u64)..=(c, d)).ctx("bench")?;
                    Ok(r.next_back()
                        .transpose()
                        .ctx("bench")?
                        .map(|(k, _)| k.value().1))
                };
                let within: Option<&mut dyn FnMut(Doc) -> Result<Option<Doc>>> =
                    if use_within && chat.is_some() {
                        Some(&mut within)
                    } else {
                        None
                    };
                let hits = search_within(&txn, &q, within, &mut |d| {
                    calls += 1;
                    let Some(row) = bodies.get(d).ctx("bench")? else {
                        return Ok(None);
                    };
                    let row = row.value();
                    let c = u32::from_le_bytes([row[0], row[1], row[2], row[3]]);
                    if chat.is_some_and(|x| x != c) {
                        return Ok(None);
                    }
                    Ok(Some(String::from_utf8_lossy(&row[4..]).into_owned()))
                })
                .unwrap();
                times.push(t0.elapsed());
                hits_total += hits.len();
                calls_total += calls;
            }
            times.sort();
            let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            println!(
                "{label:<34} p50 {:>8.0} µs  p99 {:>8.0} µs  max {:>8.0} µs  hits/q {:>5.1}  candidate calls/q {:>7.1}",
                us(pct(0.5)),
                us(pct(0.99)),
                us(*times.last().unwrap()),
                hits_total as f64 / queries.len() as f64,
                calls_total as f64 / queries.len() as f64,
            );
        };
        let pick = |rng: &mut dyn FnMut() -> u64, lo: usize, hi: usize| {
            vocab[lo + (rng() as usize) % (hi - lo)].clone()
        };
        let q = 300;
        type Rng<'a> = &'a mut dyn FnMut() -> u64;
        type Query = (String, Option<u32>);
        let mut qs = |f: &mut dyn FnMut(Rng) -> Query| -> Vec<Query> {
            (0..q).map(|_| f(&mut rng)).collect()
        };
        let common = qs(&mut |r| (pick(r, 0, 50), None));
        let medium = qs(&mut |r| (pick(r, 1_000, 2_000), None));
        let rare = qs(&mut |r| (pick(r, 30_000, 50_000), None));
        let common_chat = qs(&mut |r| (pick(r, 0, 50), Some((r() % u64::from(chats)) as u32)));
        let rare_chat = qs(&mut |r| {
            (
                pick(r, 30_000, 50_000),
                Some((r() % u64::from(chats)) as u32),
            )
        });
        let two_common = qs(&mut |r| (format!("{} {}", pick(r, 0, 50), pick(r, 0, 50)), None));
        let common_rare = qs(&mut |r| {
            (
                format!("{} {}", pick(r, 0, 50), pick(r, 5_000, 20_000)),
                None,
            )
        });
        let phrase = qs(&mut |r| (format!("\"{} {}\"", pick(r, 0, 50), pick(r, 0, 200)), None));
        let prefix = qs(&mut |r| {
            let w = pick(r, 0, 2_000);
            let cut = w.char_indices().nth(3).map_or(w.len(), |(i, _)| i);
            (w[..cut].to_string(), None)
        });
        let prefix_short = qs(&mut |r| {
            let w = pick(r, 0, 2_000);
            let cut = w.char_indices().nth(1).map_or(w.len(), |(i, _)| i);
            (w[..cut].to_string(), None)
        });
        let none = qs(&mut |r| {
            (
                format!("{} {}", pick(r, 30_000, 50_000), pick(r, 30_000, 50_000)),
                None,
            )
        });
        run("one common word", &common, false);
        run("one medium word", &medium, false);
        run("one rare word", &rare, false);
        run("common word, one chat (candidate)", &common_chat, false);
        run("common word, one chat (within)", &common_chat, true);
        run("rare word, one chat (candidate)", &rare_chat, false);
        run("rare word, one chat (within)", &rare_chat, true);
        run("two common words", &two_common, false);
        run("common + less common word", &common_rare, false);
        run("quoted phrase", &phrase, false);
        run("3-char prefix", &prefix, false);
        run("1-char prefix", &prefix_short, false);
        run("two rare words (mostly no hit)", &none, false);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn fold_idempotent(s in any::<String>()) {
            let once = fold(&s);
            prop_assert_eq!(fold(&once), once);
        }

        #[test]
        fn fold_idempotent_mixed(s in mixed_text()) {
            let once = fold(&s);
            prop_assert_eq!(fold(&once), once);
        }

        #[test]
        fn fold_matches_the_reference(s in any::<String>()) {
            prop_assert_eq!(fold(&s), fold_reference(&s));
        }

        #[test]
        fn fold_matches_the_reference_mixed(s in mixed_text()) {
            prop_assert_eq!(fold(&s), fold_reference(&s));
        }

        #[test]
        fn fold_matches_the_reference_marks(
            s in proptest::collection::vec(
                prop_oneof![
                    proptest::char::range('a', 'e'),
                    proptest::char::range('\u{0300}', '\u{036F}'),
                    proptest::char::range('\u{1100}', '\u{11FF}'),
                    proptest::char::range('\u{AC00}', '\u{AC10}'),
                    proptest::char::range('\u{0B80}', '\u{0BFF}'),
                    proptest::char::range('\u{0D00}', '\u{0D7F}'),
                    proptest::char::range('\u{1B00}', '\u{1B7F}'),
                    proptest::char::range('\u{0390}', '\u{03CF}'),
                ],
                0..16,
            ).prop_map(|v| v.into_iter().collect::<String>())
        ) {
            prop_assert_eq!(fold(&s), fold_reference(&s));
        }

        #[test]
        fn fold_ignores_case(s in letters()) {
            prop_assert_eq!(fold(&s.to_uppercase()), fold(&s));
            prop_assert_eq!(fold(&s.to_lowercase()), fold(&s));
        }

        #[test]
        fn tokens_are_sane(s in any::<String>()) {
            let f = fold(&s);
            for t in tokenize(&f) {
                prop_assert!(!t.text.is_empty());
                prop_assert!(t.text.len() <= MAX_TOKEN_BYTES);
            }
            let _ = ParsedQuery::parse(&s);
            let _ = matches(&s, &s);
        }

        #[test]
        fn postings_match_a_model(ops in proptest::collection::vec(op(), 1..800)) {
            let db = mem_db();
            let mut model = BTreeSet::new();
            let txn = db.begin_write().unwrap();
            // Spread docs over time so gaps take several bytes; three share each millisecond,
            // with sequence numbers all over (and across) the 20 bits.
            let d = |i: u64| doc(1_000_000 + (i / 3) * 7_919, (i * 104_729 + 0xFFF00) & SEQ_MASK);
            for op in ops {
                match op {
                    Op::Add(i) => {
                        index(&txn, d(i), "tok").unwrap();
                        model.insert(("tok".to_string(), d(i)));
                    }
                    Op::Remove(i) => {
                        unindex(&txn, d(i), "tok").unwrap();
                        model.remove(&("tok".to_string(), d(i)));
                    }
                }
            }
            txn.commit().unwrap();
            prop_assert_eq!(all_postings(&db), model.clone());
            let terms = all_terms(&db);
            if model.is_empty() {
                prop_assert!(terms.is_empty());
            } else {
                prop_assert_eq!(terms, BTreeSet::from([("tok".to_string(), model.len() as u32)]));
            }
            // Newest first through search, too.
            let txn = db.begin_read().unwrap();
            let q = SearchQuery { text: "tok", after: None, before: None, limit: 1000 };
            let hits = search(&txn, &q, &mut |_| Ok(Some("tok".into()))).unwrap();
            let want: Vec<Doc> = model.iter().rev().map(|(_, d)| *d).collect();
            prop_assert_eq!(docs_of(&hits), want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// `index_many` in batches stores exactly what `index` one by one stores, and keeps
        /// every block within its size limit.
        #[test]
        fn batched_indexing_equals_one_by_one(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u64..3_000, 0usize..6, 1usize..5), 1..300),
                1..4,
            )
        ) {
            const WORDS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "eps", "zeta"];
            let text = |w: usize, n: usize| (0..n).map(|k| WORDS[(w + k) % 6]).collect::<Vec<_>>().join(" ");
            let one = mem_db();
            let many = mem_db();
            for batch in &batches {
                let items: Vec<(Doc, String)> = batch
                    .iter()
                    .map(|(i, w, n)| (doc(1_000_000 + (i / 2) * 977, (i * 7_919) & SEQ_MASK), text(*w, *n)))
                    .collect();
                let txn = one.begin_write().unwrap();
                for (d, t) in &items {
                    index(&txn, *d, t).unwrap();
                }
                txn.commit().unwrap();
                let txn = many.begin_write().unwrap();
                let refs: Vec<(Doc, &str)> = items.iter().map(|(d, t)| (*d, t.as_str())).collect();
                index_many(&txn, &refs).unwrap();
                txn.commit().unwrap();
            }
            prop_assert_eq!(all_postings(&many), all_postings(&one));
            prop_assert_eq!(all_terms(&many), all_terms(&one));
            let txn = many.begin_read().unwrap();
            let t = txn.open_table(POSTINGS).unwrap();
            for e in t.iter().unwrap() {
                let (_, v) = e.unwrap();
                prop_assert!(v.value().len() <= MAX_BLOCK_BYTES);
            }
        }
    }

    #[test]
    fn within_joins_the_callers_filter() {
        let db = mem_db();
        // Three chats; chat = i % 3.
        let corpus: Vec<(Doc, String)> = (0..600u64)
            .map(|i| {
                (
                    doc(10_000 + i, 0),
                    format!(
                        "msg {} {}",
                        if i % 7 == 0 { "rare" } else { "common" },
                        i % 3
                    ),
                )
            })
            .collect();
        let refs: Vec<(Doc, &str)> = corpus.iter().map(|(d, b)| (*d, b.as_str())).collect();
        let c = Corpus::new(&db, &refs);
        let chat1: BTreeSet<Doc> = corpus
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 == 1)
            .map(|(_, (d, _))| *d)
            .collect();
        let txn = db.begin_read().unwrap();
        for text in [
            "common",
            "rare",
            "msg rare",
            "comm",
            "\"msg rare\"",
            "nothing",
        ] {
            for (after, before) in [(None, None), (Some(10_100), Some(10_400))] {
                let q = SearchQuery {
                    text,
                    after,
                    before,
                    limit: 15,
                };
                let mut calls = 0;
                let mut within = |d: Doc| Ok(chat1.range(..=d).next_back().copied());
                let got = search_within(&txn, &q, Some(&mut within), &mut |d| {
                    calls += 1;
                    Ok(chat1.contains(&d).then(|| c.bodies[&d].clone()))
                })
                .unwrap();
                let want = search(&txn, &q, &mut |d| {
                    Ok(chat1.contains(&d).then(|| c.bodies[&d].clone()))
                })
                .unwrap();
                assert_eq!(got, want, "{text}");
                assert!(got.iter().all(|h| chat1.contains(&h.doc)));
                // Only docs of the chat were offered.
                assert!(calls <= got.len() + 15, "{text}: {calls} calls");
            }
        }
    }

    /// A tiny vocabulary, so queries hit often and prefixes share tokens.
    fn vocab_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                "ab", "abc", "abd", "b", "bc", "Ab", "ÄB", "x", "東京", "京", "👍", ",", ".",
            ]),
            0..8,
        )
        .prop_map(|v| v.join(" "))
    }

    fn vocab_query() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                "ab", "a", "abc", "b", "bc", "x", "東", "京", "👍", "\"ab b\"", "\"b",
            ]),
            1..4,
        )
        .prop_map(|v| v.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Search returns exactly what judging every doc would: the same tiers, newest first
        /// within a tier, only docs in the time bounds and accepted by the filters.
        #[test]
        fn search_agrees_with_brute_force(
            texts in proptest::collection::vec(vocab_text(), 1..60),
            query in vocab_query(),
            bounds in (0u64..70, 0u64..70),
            keep in 1u64..4,
            limit in 1usize..30,
            use_within in any::<bool>(),
        ) {
            let db = mem_db();
            let bodies: HashMap<Doc, String> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| (doc(i as u64, i as u64 % 3), t.clone()))
                .collect();
            let txn = db.begin_write().unwrap();
            for (&d, body) in &bodies {
                index(&txn, d, body).unwrap();
            }
            txn.commit().unwrap();
            let (after, before) = (Some(bounds.0.min(bounds.1)), Some(bounds.0.max(bounds.1)));
            let accepted: BTreeSet<Doc> = bodies.keys().copied().filter(|d| doc_time(*d) % keep == 0).collect();
            let mut want: Vec<(Tier, Reverse<Doc>)> = accepted
                .iter()
                .filter(|&&d| (bounds.0.min(bounds.1)..=bounds.0.max(bounds.1)).contains(&doc_time(d)))
                .filter_map(|&d| matches(&query, &bodies[&d]).map(|t| (t, Reverse(d))))
                .collect();
            want.sort();
            want.truncate(limit);
            let want: Vec<Hit> = want.into_iter().map(|(tier, Reverse(doc))| Hit { doc, tier }).collect();
            let txn = db.begin_read().unwrap();
            let q = SearchQuery { text: &query, after, before, limit };
            let mut within = |d: Doc| Ok(accepted.range(..=d).next_back().copied());
            let within: Option<&mut dyn FnMut(Doc) -> Result<Option<Doc>>> =
                if use_within { Some(&mut within) } else { None };
            let got = search_within(&txn, &q, within, &mut |d| {
                Ok(accepted.contains(&d).then(|| bodies[&d].clone()))
            })
            .unwrap();
            prop_assert_eq!(got, want, "query {:?}", query);
        }

        /// Any token of a text, used as the query, finds that text (among many others).
        #[test]
        fn every_token_finds_its_text(texts in proptest::collection::vec(mixed_text(), 1..24)) {
            let db = mem_db();
            let bodies: HashMap<Doc, String> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| (doc(1_000 + i as u64, 0), t.clone()))
                .collect();
            let txn = db.begin_write().unwrap();
            for (&d, body) in &bodies {
                index(&txn, d, body).unwrap();
            }
            txn.commit().unwrap();
            let txn = db.begin_read().unwrap();
            for (&d, body) in &bodies {
                let folded = fold(body);
                for tok in tokenize(&folded) {
                    let q = SearchQuery { text: tok.text, after: None, before: None, limit: 10 };
                    // The caller's filter only accepts this doc.
                    let hits = search(&txn, &q, &mut |x| {
                        Ok((x == d).then(|| bodies[&x].clone()))
                    })
                    .unwrap();
                    prop_assert_eq!(docs_of(&hits), vec![d], "token {:?} of {:?}", tok.text, body);
                }
            }
        }
    }
}
