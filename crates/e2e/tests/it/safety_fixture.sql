-- Schema for the classifier's safety proof (safety.rs): the tables, columns, views,
-- sequences, functions and types that the statements of crates/classify/tests/corpus.txt
-- name, so that its reads really execute on a replica, and its writes get as far as the
-- replica's read-only check. Run by `app` (the database owner) on the primary of a fresh
-- database. Every table gets at least one row, so per-row expressions (functions in the
-- select list, subqueries) are really evaluated.
--
-- To extend: run the test, read the "errored" lines of its report (42P01 undefined table,
-- 42703 undefined column, 42883 undefined function) and add what is missing here.

-- The corpus' main table `t`: almost every column some corpus statement names. `b` is an
-- int (COALESCE(a, b, 0)), so `WHERE b = 'FOR UPDATE'` cannot run: one known error.
CREATE TABLE t (
    id bigserial PRIMARY KEY,
    a int, b int, c int, n int, x int, y int,
    v text, name text, note text, owner text,
    deleted bool NOT NULL DEFAULT false,
    old bool NOT NULL DEFAULT false,
    arr int[], tags text[],
    ts timestamptz, created_at timestamptz,
    u_id int,
    nextval int,
    pg_try_advisory_lock_is_not_a_thing int
);
CREATE INDEX t_idx ON t (a);
INSERT INTO t (a, b, c, n, x, y, v, name, note, owner, arr, tags, ts, created_at, u_id, nextval)
SELECT i, i * 2, i * 3, i, i, i, 'v' || i, 'name ' || i, 'note', 'app',
       ARRAY[i, i + 1, i + 2], ARRAY['x', 'y'], now(), now(), i, i
FROM generate_series(1, 5) AS i;

CREATE TABLE u (id int PRIMARY KEY, a int, b int, t_id int, gone bool NOT NULL DEFAULT false);
INSERT INTO u SELECT i, i, i * 2, i, false FROM generate_series(1, 3) AS i;
CREATE VIEW v AS SELECT id AS t, a FROM u;

-- `s` is both a schema (TABLE s.t) and a sequence (nextval('s')): different namespaces.
CREATE SCHEMA s;
CREATE TABLE s.t (id int);
INSERT INTO s.t VALUES (1);
CREATE SEQUENCE public.s;
SELECT nextval('public.s');
CREATE SEQUENCE users_seq;
CREATE SEQUENCE hibernate_sequence;
CREATE SEQUENCE order_line_seq;

CREATE TABLE a (id int PRIMARY KEY, b_id int, name text);
CREATE TABLE b (id int PRIMARY KEY, a_id int, name text, flag bool NOT NULL DEFAULT true, a int);
CREATE TABLE c (id int, a_id int);
CREATE TABLE d (id int);
INSERT INTO a VALUES (1, 1, 'a1'), (2, 2, 'a2');
INSERT INTO b VALUES (1, 1, 'b1', true, 1), (2, 2, 'b2', false, 2);
INSERT INTO c VALUES (1, 1);
INSERT INTO d VALUES (1);

CREATE TABLE m (x int, t int);
INSERT INTO m SELECT i, i FROM generate_series(1, 5) AS i;
CREATE TABLE docs (id serial, data jsonb);
INSERT INTO docs (data) VALUES ('{"name": "n", "tags": ["a"], "a": {"b": 1}, "x": 1}');
CREATE TABLE doc (id serial, data jsonb, tags varchar(20)[]);
INSERT INTO doc (data, tags) VALUES ('{"k": 1}', ARRAY['a']);

CREATE TABLE users (
    id serial PRIMARY KEY, name text, fullname text, email text, sign_in_count int NOT NULL DEFAULT 0,
    created_at timestamptz, updated_at timestamptz, version int NOT NULL DEFAULT 0
);
INSERT INTO users (name, fullname, email) VALUES ('ann', 'Ann A', 'ann@example.com'), ('bob', 'Bob B', 'bob@example.com');
CREATE TABLE addresses (id serial PRIMARY KEY, user_id int, email text);
INSERT INTO addresses (user_id, email) VALUES (1, 'ann@example.com');
CREATE TABLE roles (user_id int, name text);
INSERT INTO roles VALUES (1, 'admin');

CREATE TABLE customers (id serial PRIMARY KEY, name text);
INSERT INTO customers (name) VALUES ('c1');
CREATE TABLE customer (id serial PRIMARY KEY, name text);
INSERT INTO customer (name) VALUES ('c1');
CREATE TABLE orders (
    id serial PRIMARY KEY, customer_id int, user_id int, total numeric, status text,
    created timestamptz NOT NULL DEFAULT now(), created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (customer_id, user_id, total, status) VALUES (1, 1, 10, 'new'), (1, 2, 20, 'paid');
CREATE TABLE payments (customer_id int, amount numeric);
INSERT INTO payments VALUES (1, 150), (1, 10);
CREATE TABLE order_line (id bigint PRIMARY KEY, order_id int, product_id int, qty int);
CREATE TABLE invoices (id serial, paid bool);
INSERT INTO invoices (paid) VALUES (true), (false);
CREATE TABLE events (id serial PRIMARY KEY, kind text UNIQUE, payload text, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO events (kind, payload) VALUES ('k', 'p');
CREATE TABLE parent_table (id int);
INSERT INTO parent_table VALUES (1);
CREATE TABLE posts (id serial PRIMARY KEY, title text, body text);
INSERT INTO posts (title, body) VALUES ('Hello World', 'the quick brown fox');
CREATE TABLE comments (id serial, post_id int, approved bool);
INSERT INTO comments (post_id, approved) VALUES (1, true);
CREATE TABLE products (id serial PRIMARY KEY, name text, deleted_at timestamptz, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO products (name) VALUES ('widget');
CREATE TABLE product (id serial PRIMARY KEY, name text, category_id int, price numeric);
INSERT INTO product (name, category_id, price) VALUES ('p', 1, 5);
CREATE TABLE category (id serial PRIMARY KEY, name text);
INSERT INTO category (name) VALUES ('cat');
CREATE TABLE tags (id serial PRIMARY KEY, name text);
INSERT INTO tags (name) VALUES ('tag');
CREATE TABLE taggings (tag_id int, taggable_id int, taggable_type text);
INSERT INTO taggings VALUES (1, 1, 'Post');
CREATE TABLE schema_migrations (version text PRIMARY KEY);
INSERT INTO schema_migrations VALUES ('20240101000000');
CREATE TABLE "select" ("insert" int, "update" int, "delete" int);
INSERT INTO "select" VALUES (1, 2, 3);

-- Django
CREATE TABLE auth_user (
    id serial PRIMARY KEY, password text, last_login timestamptz, is_superuser bool NOT NULL DEFAULT false,
    username text, is_active bool NOT NULL DEFAULT true
);
INSERT INTO auth_user (password, username) VALUES ('x', 'ann');
CREATE TABLE blog_post (id serial PRIMARY KEY, title text, body text, author_id int, created timestamptz NOT NULL DEFAULT now(), published bool NOT NULL DEFAULT true);
INSERT INTO blog_post (title, body, author_id) VALUES ('t', 'b', 1);
CREATE TABLE blog_tag (id serial PRIMARY KEY, name text UNIQUE);
CREATE TABLE django_content_type (id serial PRIMARY KEY, app_label text, model text);
INSERT INTO django_content_type (app_label, model) VALUES ('blog', 'post');
CREATE TABLE django_session (session_key text PRIMARY KEY, expire_date timestamptz);
CREATE TABLE tag (id serial PRIMARY KEY, name text);
INSERT INTO tag (name) VALUES ('t');
CREATE TABLE post_tags (post_id int, tag_id int);
INSERT INTO post_tags VALUES (1, 1);
CREATE TABLE item (id serial, category_id int, price numeric);
INSERT INTO item (category_id, price) VALUES (1, 5);
CREATE TABLE event (id serial, user_id int, ts timestamptz NOT NULL DEFAULT now());
INSERT INTO event (user_id) VALUES (1), (1);
CREATE TABLE post (id serial PRIMARY KEY, title text, search tsvector);
INSERT INTO post (title, search) VALUES ('hello', to_tsvector('english', 'hello world'));
CREATE TABLE app_model (id serial, created timestamptz NOT NULL DEFAULT now());
INSERT INTO app_model DEFAULT VALUES;
CREATE TABLE counter (id int PRIMARY KEY, value int NOT NULL);
INSERT INTO counter VALUES (1, 0);
CREATE TABLE shop_order (id serial PRIMARY KEY, status text);
INSERT INTO shop_order (status) VALUES ('new');
CREATE TABLE shop_item (id serial PRIMARY KEY, order_id int);
INSERT INTO shop_item (order_id) VALUES (1);
CREATE TABLE sessions (id serial PRIMARY KEY);
CREATE TABLE accounts (id serial PRIMARY KEY, owner text);
INSERT INTO accounts (owner) VALUES ('app');
CREATE TABLE account (id serial PRIMARY KEY, balance numeric);
INSERT INTO account (balance) VALUES (1);

-- What the corpus' writes touch, so they reach the replica's read-only check rather than
-- failing earlier on a missing name.
CREATE TABLE staging (v text);
INSERT INTO staging VALUES ('s1');
CREATE TABLE audit (who text, at timestamptz);
CREATE TABLE log (id serial, m text);
CREATE TABLE jobs (id serial PRIMARY KEY, state text, finished timestamptz);
INSERT INTO jobs (state) VALUES ('queued');
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM t;
CREATE UNIQUE INDEX mv_n ON mv (n);
CREATE TABLE p (id int) PARTITION BY RANGE (id);
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');

-- User functions named in the corpus header. Unqualified names would go to schema `app`
-- (`"$user"` leads the search path once it exists), hence the explicit `public.`. The read list's functions are harmless SQL
-- functions; the write list's really write, so a replica refuses them.
CREATE SCHEMA app;
CREATE FUNCTION app.price_of(id int) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT coalesce((SELECT price FROM product WHERE product.id = price_of.id), 0) $$;
CREATE FUNCTION public.slugify(title text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT lower(regexp_replace(title, '[^a-zA-Z0-9]+', '-', 'g')) $$;
CREATE FUNCTION app.bump_counter(by_n int) RETURNS int LANGUAGE sql
    AS $$ UPDATE counter SET value = value + by_n WHERE id = 1 RETURNING value $$;
CREATE FUNCTION public.bump_counter(by_n int) RETURNS int LANGUAGE sql
    AS $$ UPDATE counter SET value = value + by_n WHERE id = 1 RETURNING value $$;
CREATE FUNCTION public.audit_log(what text) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO audit (who, at) VALUES (what, now()) $$;
CREATE PROCEDURE app.proc() LANGUAGE sql AS $$ INSERT INTO log (m) VALUES ('proc') $$;
CREATE PROCEDURE public.do_something(n int, s text) LANGUAGE sql AS $$ INSERT INTO log (m) VALUES (s) $$;

-- Last: the marker the test waits for on each replica.
CREATE TABLE safety_fixture_ready (token text);
