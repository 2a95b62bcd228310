//! Which functions write (or are bound to one session) and which are safe on a replica.
//!
//! A call is matched by its lower-case unqualified name (`nextval`) and by its qualified
//! name as written (`pg_catalog.nextval`). A list entry may hold one `*` as a wildcard
//! (`pg_advisory_*`, `has_*_privilege`). Precedence, first match wins: the user's
//! `functions.write`, the user's `functions.read`, the built-in write list, the built-in
//! read list; anything else is unknown and follows `functions.unknown`.
//!
//! An entry written with a schema (`billing.charge`) in the **write** list also matches an
//! unqualified call `charge(...)`: pgsplit cannot resolve `search_path`, so it fails closed.
//! A schema-qualified entry in the **read** list only matches calls written with that
//! schema, and a built-in read name called with a schema other than `pg_catalog`
//! (`myschema.count`) is a user function, so it is unknown.
//!
//! Only calls are seen. Operators, casts, triggers, rules, views and column defaults run
//! functions the SQL text does not name; a writing function hidden behind a view or an
//! operator is out of reach (list the view's callers' statements in a YAML rule instead).

/// Built-in functions that write, take locks that other sessions must see, or are bound to
/// one session (their effect or answer only makes sense on the connection that the rest of
/// the session uses). All of them route to the primary.
///
/// Advisory locks, session and transaction level alike (`pg_advisory_xact_lock` too), are
/// here: a hot standby accepts them, but a lock taken on a replica excludes nobody on the
/// primary, so it would silently lose its meaning.
pub const BUILTIN_WRITE: &[&str] = &[
    // Sequences: nextval/setval write; currval/lastval read state of the session that ran
    // nextval, which is on the primary.
    "nextval",
    "setval",
    "currval",
    "lastval",
    // Advisory locks (all variants, incl. unlock and xact_ forms).
    "pg_advisory_*",
    "pg_try_advisory_*",
    // Notifications and transaction ids (a standby cannot assign xids).
    "pg_notify",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_export_snapshot",
    "pg_listening_channels",
    // Session settings.
    "set_config",
    "setseed",
    // Large objects.
    "lo_*",
    "loread",
    "lowrite",
    // Remote execution.
    "dblink",
    "dblink_*",
    // Server administration.
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_log_backend_memory_contexts",
    "pg_promote",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_create_restore_point",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_current_xlog_location",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_import_system_collations",
    "pg_stat_reset*",
    "pg_stat_statements_reset",
    "pg_stat_clear_snapshot",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    // Replication slots and origins.
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_replication_slot_advance",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_peek_binary_changes",
    "pg_logical_emit_message",
    "pg_replication_origin_*",
    "pg_sync_replication_slots",
    // Sequences and tables touched through catalog helpers.
    "pg_sequence_last_value",
    "brin_summarize_new_values",
    "brin_summarize_range",
    "brin_desummarize_range",
    "gin_clean_pending_list",
    "pg_prewarm",
];

/// Built-in functions known to be safe on a hot standby: aggregates, window functions,
/// string, math, date/time, JSON, array, range, network, text search, catalog and size
/// helpers that drivers and ORMs call, and a few common extensions (pgcrypto, pg_trgm,
/// uuid-ossp, fuzzystrmatch, unaccent). Functions not here (and not in a user list) follow
/// `functions.unknown`.
pub const BUILTIN_READ: &[&str] = &[
    // Aggregates.
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "json_objectagg",
    "json_arrayagg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_*",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "xmlagg",
    "range_agg",
    "range_intersect_agg",
    "any_value",
    // Window functions.
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // Strings.
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "substr",
    "substring",
    "position",
    "strpos",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "lpad",
    "rpad",
    "concat",
    "concat_ws",
    "replace",
    "split_part",
    "reverse",
    "left",
    "right",
    "repeat",
    "initcap",
    "md5",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "encode",
    "decode",
    "format",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_split_to_table",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_substr",
    "starts_with",
    "to_hex",
    "translate",
    "ascii",
    "chr",
    "string_to_array",
    "array_to_string",
    "string_to_table",
    "to_char",
    "to_number",
    "to_date",
    "to_timestamp",
    "overlay",
    "normalize",
    "unistr",
    "convert",
    "convert_from",
    "convert_to",
    "pg_client_encoding",
    "text",
    "varchar",
    "bpchar",
    "char",
    "casefold",
    "crc32",
    "crc32c",
    // Math.
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "sqrt",
    "cbrt",
    "power",
    "pow",
    "exp",
    "ln",
    "log",
    "log10",
    "mod",
    "sign",
    "pi",
    "random",
    "random_normal",
    "degrees",
    "radians",
    "sin",
    "cos",
    "tan",
    "cot",
    "asin",
    "acos",
    "atan",
    "atan2",
    "sind",
    "cosd",
    "tand",
    "sinh",
    "cosh",
    "tanh",
    "width_bucket",
    "div",
    "gcd",
    "lcm",
    "factorial",
    "numeric",
    "scale",
    "trim_scale",
    "min_scale",
    "int2",
    "int4",
    "int8",
    "float4",
    "float8",
    "bool",
    "greatest",
    "least",
    // Date and time.
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "date_trunc",
    "date_part",
    "extract",
    "date_bin",
    "age",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    "timezone",
    "overlaps",
    "date_add",
    "date_subtract",
    "date",
    "timestamp",
    "timestamptz",
    "time",
    "timetz",
    "interval",
    "to_timestamp",
    // Set-returning helpers.
    "generate_series",
    "generate_subscripts",
    "unnest",
    // JSON.
    "to_json",
    "to_jsonb",
    "row_to_json",
    "array_to_json",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "json_object",
    "jsonb_object",
    "json_array_elements",
    "jsonb_array_elements",
    "json_array_elements_text",
    "jsonb_array_elements_text",
    "json_each",
    "jsonb_each",
    "json_each_text",
    "jsonb_each_text",
    "json_extract_path",
    "jsonb_extract_path",
    "json_extract_path_text",
    "jsonb_extract_path_text",
    "json_object_keys",
    "jsonb_object_keys",
    "json_typeof",
    "jsonb_typeof",
    "jsonb_set",
    "jsonb_set_lax",
    "jsonb_insert",
    "jsonb_pretty",
    "jsonb_strip_nulls",
    "json_strip_nulls",
    "jsonb_path_query",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "json_array_length",
    "jsonb_array_length",
    "json_populate_record",
    "jsonb_populate_record",
    "json_populate_recordset",
    "jsonb_populate_recordset",
    "json_to_record",
    "jsonb_to_record",
    "json_to_recordset",
    "jsonb_to_recordset",
    "json",
    "jsonb",
    "json_scalar",
    "json_serialize",
    // Arrays and ranges.
    "array_length",
    "array_upper",
    "array_lower",
    "array_dims",
    "array_ndims",
    "cardinality",
    "array_append",
    "array_prepend",
    "array_cat",
    "array_position",
    "array_positions",
    "array_remove",
    "array_replace",
    "array_fill",
    "trim_array",
    "array_sample",
    "array_shuffle",
    "array_reverse",
    "array_sort",
    "isempty",
    "lower_inc",
    "upper_inc",
    "lower_inf",
    "upper_inf",
    "range_merge",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "int4multirange",
    "int8multirange",
    "nummultirange",
    "tsmultirange",
    "tstzmultirange",
    "datemultirange",
    "multirange",
    // Network, geometry, uuid, crypto, text search, xml.
    "host",
    "hostmask",
    "masklen",
    "netmask",
    "network",
    "broadcast",
    "family",
    "abbrev",
    "set_masklen",
    "inet_same_family",
    "inet_merge",
    "point",
    "box",
    "circle",
    "lseg",
    "path",
    "polygon",
    "area",
    "center",
    "diameter",
    "radius",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuid_nil",
    "uuid_extract_timestamp",
    "uuid_extract_version",
    "digest",
    "hmac",
    "crypt",
    "gen_salt",
    "gen_random_bytes",
    "pgp_sym_encrypt",
    "pgp_sym_decrypt",
    "pgp_pub_encrypt",
    "pgp_pub_decrypt",
    "armor",
    "dearmor",
    "to_tsvector",
    "to_tsquery",
    "plainto_tsquery",
    "phraseto_tsquery",
    "websearch_to_tsquery",
    "ts_rank",
    "ts_rank_cd",
    "ts_headline",
    "setweight",
    "strip",
    "numnode",
    "querytree",
    "ts_rewrite",
    "tsvector_to_array",
    "array_to_tsvector",
    "xpath",
    "xpath_exists",
    "xmlparse",
    "xml_is_well_formed",
    "similarity",
    "word_similarity",
    "strict_word_similarity",
    "show_trgm",
    "unaccent",
    "levenshtein",
    "levenshtein_less_equal",
    "soundex",
    "difference",
    "metaphone",
    "dmetaphone",
    "dmetaphone_alt",
    // Session and catalog information (answers are the same on a replica).
    "version",
    "current_database",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_setting",
    "current_query",
    "pg_backend_pid",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "has_*_privilege",
    "pg_has_role",
    "row_security_active",
    "pg_*_is_visible",
    "format_type",
    "pg_get_*",
    "pg_describe_object",
    "pg_identify_object",
    "pg_identify_object_as_address",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_tablespace_size",
    "pg_size_pretty",
    "pg_size_bytes",
    "pg_column_size",
    "pg_relation_filenode",
    "pg_relation_filepath",
    "obj_description",
    "col_description",
    "shobj_description",
    "pg_encoding_to_char",
    "pg_char_to_encoding",
    "pg_encoding_max_length",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_is_in_recovery",
    "pg_last_wal_replay_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_is_wal_replay_paused",
    "pg_get_wal_replay_pause_state",
    "pg_wal_lsn_diff",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_typeof",
    "pg_collation_for",
    "pg_current_snapshot",
    "txid_current_snapshot",
    "pg_snapshot_xmin",
    "pg_snapshot_xmax",
    "pg_snapshot_xip",
    "txid_snapshot_xmin",
    "txid_snapshot_xmax",
    "pg_visible_in_snapshot",
    "pg_xact_status",
    "txid_status",
    "pg_xact_commit_timestamp",
    "pg_last_committed_xact",
    "pg_stat_get_*",
    "pg_stat_file",
    "pg_ls_dir",
    "pg_tablespace_location",
    "pg_options_to_table",
    "pg_settings_get_flags",
    "pg_jit_available",
    "pg_notification_queue_usage",
    "pg_trigger_depth",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_index_column_has_property",
    "pg_index_has_property",
    "pg_indexam_has_property",
    "pg_column_is_updatable",
    "pg_relation_is_updatable",
    "pg_input_is_valid",
    "pg_input_error_info",
    "to_regclass",
    "to_regtype",
    "to_regproc",
    "to_regprocedure",
    "to_regnamespace",
    "to_regrole",
    "to_regoper",
    "to_regoperator",
    "to_regcollation",
    "to_regtypemod",
    "pg_lsn",
    "array_in",
    "textin",
    "pg_sequence_parameters",
    "pg_sequences",
    "pg_show_all_settings",
    "pg_timezone_names",
    "pg_timezone_abbrevs",
    "pg_available_extensions",
    "pg_available_extension_versions",
    "pg_cursor",
    "pg_prepared_statement",
    "pg_prepared_xact",
    "pg_lock_status",
    "pg_stat_statements",
    "pg_walfile_name",
    "pg_control_checkpoint",
    "pg_control_system",
    "pg_control_init",
    "pg_control_recovery",
    "information_schema._pg_*",
    "_pg_expandarray",
    "pg_partition_tree",
    "pg_partition_ancestors",
    "pg_partition_root",
];

/// What `functions.unknown` says about functions in no list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownFunctions {
    /// Unknown functions may write: send the statement to the primary (the default).
    #[default]
    Primary,
    /// Trust unknown functions to be read-only.
    Replica,
}

/// How one function call is classed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FnClass {
    /// Writes or is session-bound: the statement needs the primary.
    Write,
    /// Known to be read-only.
    Read,
    /// In no list: follows `functions.unknown`.
    Unknown,
}

/// The compiled function lists of one configuration generation.
#[derive(Clone, Debug)]
pub(crate) struct FunctionLists {
    user_write: Vec<Pattern>,
    user_read: Vec<Pattern>,
    builtin_write: Vec<Pattern>,
    builtin_read: Vec<Pattern>,
}

/// One list entry: a name, or a glob with one `*` (`pg_advisory_*`, `has_*_privilege`).
#[derive(Clone, Debug)]
struct Pattern {
    /// Lower-case text before the `*` (all of it when there is none).
    head: String,
    /// Lower-case text after the `*`, when there is one.
    tail: Option<String>,
    /// Whether the entry names a schema (contains a dot).
    qualified: bool,
}

impl Pattern {
    fn new(entry: &str) -> Pattern {
        let entry = entry.trim().to_ascii_lowercase();
        let qualified = entry.contains('.');
        match entry.split_once('*') {
            Some((head, tail)) => Pattern {
                head: head.to_owned(),
                tail: Some(tail.to_owned()),
                qualified,
            },
            None => Pattern {
                head: entry,
                tail: None,
                qualified,
            },
        }
    }

    fn glob(head: &str, tail: Option<&str>, name: &str) -> bool {
        match tail {
            None => name == head,
            Some(tail) => {
                name.len() >= head.len() + tail.len()
                    && name.starts_with(head)
                    && name.ends_with(tail)
            }
        }
    }

    /// `qualified` is the call as written (lower-case); `bare` its last part.
    fn matches(&self, qualified: &str, bare: &str, loose_schema: bool) -> bool {
        let tail = self.tail.as_deref();
        if !self.qualified {
            return Pattern::glob(&self.head, tail, bare);
        }
        if Pattern::glob(&self.head, tail, qualified) {
            return true;
        }
        // An unqualified call may resolve to a qualified write entry.
        match self.head.rsplit_once('.') {
            Some((_, head_bare)) if loose_schema && qualified == bare => {
                Pattern::glob(head_bare, tail, bare)
            }
            _ => false,
        }
    }
}

impl FunctionLists {
    pub(crate) fn new(user_write: &[String], user_read: &[String]) -> Self {
        let compile = |v: &mut dyn Iterator<Item = &str>| v.map(Pattern::new).collect();
        FunctionLists {
            user_write: compile(&mut user_write.iter().map(String::as_str)),
            user_read: compile(&mut user_read.iter().map(String::as_str)),
            builtin_write: compile(&mut BUILTIN_WRITE.iter().copied()),
            builtin_read: compile(&mut BUILTIN_READ.iter().copied()),
        }
    }

    /// Classes a call written as `name` (lower-case, dots between parts).
    pub(crate) fn class_of(&self, name: &str) -> FnClass {
        let bare = name.rsplit_once('.').map_or(name, |(_, b)| b);
        // A call qualified with a schema other than pg_catalog is not the built-in function.
        let builtin_ok = name == bare || name.starts_with("pg_catalog.");
        let any = |list: &[Pattern], loose: bool| list.iter().any(|p| p.matches(name, bare, loose));
        if any(&self.user_write, true) {
            FnClass::Write
        } else if any(&self.user_read, false) {
            FnClass::Read
        } else if any(&self.builtin_write, true) {
            // A writing built-in's name fails closed even when schema-qualified elsewhere.
            FnClass::Write
        } else if builtin_ok && any(&self.builtin_read, false) {
            FnClass::Read
        } else {
            FnClass::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_patterns() {
        let l = FunctionLists::new(
            &["billing.charge".into(), "audit_*".into()],
            &["currval".into(), "myschema.safe".into()],
        );
        assert_eq!(l.class_of("nextval"), FnClass::Write);
        assert_eq!(l.class_of("pg_catalog.nextval"), FnClass::Write);
        assert_eq!(l.class_of("other.nextval"), FnClass::Write);
        assert_eq!(l.class_of("pg_advisory_xact_lock"), FnClass::Write);
        assert_eq!(l.class_of("pg_try_advisory_lock_shared"), FnClass::Write);
        assert_eq!(l.class_of("lo_import"), FnClass::Write);
        assert_eq!(l.class_of("count"), FnClass::Read);
        assert_eq!(l.class_of("pg_catalog.count"), FnClass::Read);
        assert_eq!(l.class_of("myapp.count"), FnClass::Unknown);
        assert_eq!(
            l.class_of("currval"),
            FnClass::Read,
            "user read beats built-in write"
        );
        assert_eq!(
            l.class_of("charge"),
            FnClass::Write,
            "unqualified call, qualified entry"
        );
        assert_eq!(l.class_of("billing.charge"), FnClass::Write);
        assert_eq!(l.class_of("audit_log"), FnClass::Write);
        assert_eq!(l.class_of("myschema.safe"), FnClass::Read);
        assert_eq!(l.class_of("safe"), FnClass::Unknown);
        assert_eq!(l.class_of("pg_stat_reset"), FnClass::Write);
        assert_eq!(l.class_of("pg_stat_get_live_tuples"), FnClass::Read);
        assert_eq!(l.class_of("my_func"), FnClass::Unknown);
        assert_eq!(l.class_of("has_table_privilege"), FnClass::Read);
        assert_eq!(l.class_of("pg_table_is_visible"), FnClass::Read);
    }
}
