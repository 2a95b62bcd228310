//! Scanning the buffered start of a client's next unit: its messages, the statements they
//! carry, the dominant classification and the bytes it takes, without consuming anything.

use std::sync::Arc;

use pgsplit_classify::{Class, Classification, Effects};
use pgsplit_wire::frame::HEADER_LEN;
use pgsplit_wire::frontend::tags as fe;

use super::RouteKit;
use crate::cstr::{cbytes, cstr};
use crate::extended::ClientStatements;

/// A unit whose whole messages exceed this without a Sync is routed on what has arrived (to
/// the primary unless every statement so far is a read... and then still the primary, since
/// the rest is unknown), so a client cannot make pgsplit buffer without bound.
const SCAN_LIMIT: usize = 1024 * 1024;

/// The verdict of scanning the buffered start of a unit.
#[derive(Debug)]
pub(crate) enum Scan<'a> {
    /// The unit is not complete yet: read more from the client.
    Incomplete,
    /// The unit's dominant classification, the SQL it came from (for `regex` rules), and
    /// whether the unit executes anything (a Parse and Describe alone do not).
    Unit {
        class: Arc<Classification>,
        sql: &'a str,
        executes: bool,
        /// Bytes of the client's input the unit takes (0 when not known exactly).
        end: usize,
        /// What the SQL texts of the unit's Query and Parse messages may do to the session,
        /// from their (cached) classifications: the relay does not lex these `end` bytes again.
        effects: Effects,
    },
}

/// How much a class weighs when a unit mixes statements: the heaviest decides the unit.
fn rank(class: Class) -> u8 {
    match class {
        Class::Read => 0,
        Class::TxnBegin(_) => 1,
        Class::TxnEnd | Class::Savepoint | Class::SessionSet(_) | Class::Cursor => 2,
        Class::Write | Class::Unknown => 3,
    }
}

/// Scans the whole messages at the front of `buf` (the client's unread input) that make up
/// the next unit, without consuming them. `classify` classifies SQL text (with the session's
/// `standard_conforming_strings`); `generation` keys the verdicts kept with prepared
/// statements.
pub(crate) fn scan_unit<'a>(
    buf: &'a [u8],
    max: usize,
    statements: &ClientStatements,
    generation: u64,
    kit: &RouteKit,
    classify: &dyn Fn(&str) -> Arc<Classification>,
) -> Scan<'a> {
    let mut best: Option<(Arc<Classification>, &'a str)> = None;
    // Statements parsed earlier in this very unit (already counted at their Parse): named
    // ones by name (rare, so the vector seldom allocates), the unnamed one by a flag.
    let mut parsed_named: Vec<&'a [u8]> = Vec::new();
    let mut parsed_unnamed = false;
    let mut executes = false;
    let mut effects = Effects::default();
    let mut off = 0;
    loop {
        let Some(header) = buf.get(off..off + HEADER_LEN) else {
            return Scan::Incomplete;
        };
        let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let len = declared + 1;
        if declared < 4 || len > max {
            // Malformed: let the relay's framer report it; route nowhere special.
            return unknown(kit);
        }
        let Some(frame) = buf.get(off..off + len) else {
            return Scan::Incomplete;
        };
        let body = &frame[HEADER_LEN..];
        match header[0] {
            fe::QUERY => {
                let Some((sql, _)) = cstr(body) else {
                    return unknown(kit);
                };
                let class = classify(sql);
                effects = effects.union(class.effects);
                note(&mut best, class, sql);
                return done(best, kit, true, off + len, effects);
            }
            fe::PARSE => {
                let Some((name, rest)) = cbytes(body) else {
                    return unknown(kit);
                };
                let sql = cstr(rest).map_or("", |(s, _)| s);
                let class = match cstr(rest) {
                    Some(_) => classify(sql),
                    None => Arc::clone(&kit.unknown),
                };
                effects = effects.union(class.effects);
                if name.is_empty() {
                    parsed_unnamed = true;
                } else {
                    parsed_named.push(name);
                }
                note(&mut best, class, sql);
            }
            fe::BIND => {
                let Some((_portal, rest)) = cbytes(body) else {
                    return unknown(kit);
                };
                let Some((name, _)) = cbytes(rest) else {
                    return unknown(kit);
                };
                let in_unit = if name.is_empty() {
                    parsed_unnamed
                } else {
                    parsed_named.contains(&name)
                };
                match in_unit {
                    // Already counted at its Parse.
                    true => {}
                    false if name.is_empty() => {
                        // The unnamed statement of an earlier unit: pgsplit does not know it.
                        note(&mut best, Arc::clone(&kit.unknown), "");
                    }
                    false => match statements.get(name) {
                        Some(statement) => {
                            let class = statement.classification(generation, |sql| match sql {
                                Some(sql) => classify(sql),
                                None => Arc::clone(&kit.unknown),
                            });
                            note(&mut best, class, "");
                        }
                        // Unknown name: the server will answer 26000 wherever it runs, but
                        // stay on the safe side.
                        None => note(&mut best, Arc::clone(&kit.unknown), ""),
                    },
                }
            }
            fe::SYNC => return done(best, kit, executes, off + len, effects),
            fe::FLUSH => {
                // The client wants answers before it sends the rest of the unit, which may
                // hold anything: the primary, unless a heavier verdict is already known.
                note(&mut best, Arc::clone(&kit.unknown), "");
                return done(best, kit, true, 0, effects);
            }
            fe::FUNCTION_CALL => {
                note(&mut best, Arc::clone(&kit.function_call), "");
                return done(best, kit, true, off + len, effects);
            }
            fe::EXECUTE => executes = true,
            fe::DESCRIBE | fe::CLOSE => {}
            _ => return unknown(kit),
        }
        off += len;
        if off > SCAN_LIMIT {
            note(&mut best, Arc::clone(&kit.unknown), "");
            return done(best, kit, true, 0, effects);
        }
    }
}

/// Keeps `class` if it outweighs the verdict so far (the first of equals wins).
fn note<'a>(
    best: &mut Option<(Arc<Classification>, &'a str)>,
    class: Arc<Classification>,
    sql: &'a str,
) {
    let heavier = best
        .as_ref()
        .is_none_or(|(b, _)| rank(class.class) > rank(b.class));
    if heavier {
        *best = Some((class, sql));
    }
}

fn done<'a>(
    best: Option<(Arc<Classification>, &'a str)>,
    kit: &RouteKit,
    executes: bool,
    end: usize,
    effects: Effects,
) -> Scan<'a> {
    let (class, sql) = best.unwrap_or_else(|| (Arc::clone(&kit.empty), ""));
    Scan::Unit {
        class,
        sql,
        executes,
        end,
        effects,
    }
}

fn unknown(kit: &RouteKit) -> Scan<'static> {
    Scan::Unit {
        class: Arc::clone(&kit.unknown),
        sql: "",
        executes: true,
        end: 0,
        effects: Effects::default(),
    }
}
