"""The PostgreSQL store's SQL: schema, upsert, dense (HNSW) and lexical (BM25 or ts_rank_cd) search.

Search statements take ``{filters}`` (``AND ...`` conditions on ``c``) so filters apply before ranking.
BM25 (k1 = 1.2, b = 0.75, Lucene's idf) is computed over the rows the filters allow, from an inverted
index table (``ragtune_postings``: lexeme, chunk id, term frequency, document length, built from the
``tsv`` column): document frequencies are counted over the query terms' postings; document count and
average length come from the filtered rows, or for an unfiltered query as recorded after each ingestion.
Reading narrow postings instead of unnesting every matching row's tsvector is what keeps it fast at
100k chunks.
"""

CHUNK_COLUMNS = "c.id, c.source, c.text, c.position, c.metadata"

MANIFEST_DDL = """
CREATE TABLE IF NOT EXISTS ragtune_meta (key text PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS ragtune_sources (source text PRIMARY KEY, info jsonb NOT NULL);
"""

STORE_DDL = """
CREATE OR REPLACE FUNCTION ragtune_doc_len(body text) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT coalesce(sum(cardinality(positions)), 0)::integer FROM unnest(to_tsvector('english', body)) $$;
CREATE TABLE IF NOT EXISTS ragtune_chunks (
  id text PRIMARY KEY, source text NOT NULL, version text NOT NULL, position integer NOT NULL,
  text text NOT NULL, text_hash text NOT NULL, tags text[] NOT NULL DEFAULT '{{}}', metadata jsonb NOT NULL,
  vector vector({d}) NOT NULL,
  tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
  doc_len integer GENERATED ALWAYS AS (ragtune_doc_len(text)) STORED);
CREATE INDEX IF NOT EXISTS ragtune_chunks_hnsw ON ragtune_chunks USING hnsw (vector vector_cosine_ops);
CREATE INDEX IF NOT EXISTS ragtune_chunks_tsv ON ragtune_chunks USING gin (tsv);
CREATE INDEX IF NOT EXISTS ragtune_chunks_source ON ragtune_chunks (source, version);
CREATE INDEX IF NOT EXISTS ragtune_chunks_tags ON ragtune_chunks USING gin (tags);
CREATE TABLE IF NOT EXISTS ragtune_embeddings (text_hash text PRIMARY KEY, vector vector({d}) NOT NULL);
CREATE TABLE IF NOT EXISTS ragtune_postings (
  lexeme text NOT NULL, id text NOT NULL REFERENCES ragtune_chunks (id) ON DELETE CASCADE,
  tf integer NOT NULL, doc_len integer NOT NULL, PRIMARY KEY (lexeme, id) INCLUDE (tf, doc_len));
CREATE INDEX IF NOT EXISTS ragtune_postings_id ON ragtune_postings (id);
"""

# The inverted index BM25 reads: one row per (lexeme, chunk), rebuilt for the upserted chunks in the same
# transaction (deleted chunks take theirs along through the foreign key).
DELETE_POSTINGS_SQL = "DELETE FROM ragtune_postings WHERE id = ANY(%(ids)s)"
POSTINGS_SQL = """
INSERT INTO ragtune_postings (lexeme, id, tf, doc_len)
SELECT u.lexeme, c.id, cardinality(u.positions), c.doc_len
FROM ragtune_chunks c CROSS JOIN LATERAL unnest(c.tsv) u WHERE c.id = ANY(%(ids)s);
"""

UPSERT_SQL = """
INSERT INTO ragtune_chunks (id, source, version, position, text, text_hash, tags, metadata, vector)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source, version = EXCLUDED.version,
  position = EXCLUDED.position, text = EXCLUDED.text, text_hash = EXCLUDED.text_hash, tags = EXCLUDED.tags,
  metadata = EXCLUDED.metadata, vector = EXCLUDED.vector
"""

DENSE_SQL = f"""
SELECT {CHUNK_COLUMNS}, NULL::vector, 1 - (c.vector <=> %(v)s) AS score
FROM ragtune_chunks c WHERE true {{filters}}
ORDER BY c.vector <=> %(v)s LIMIT %(k)s
"""

# Any query term may match (OR), as in BM25 engines: plainto_tsquery's & and <-> become |.
_QUERY = """q AS (SELECT regexp_replace(plainto_tsquery('english', %(q)s)::text, ' (&|<[0-9-]+>) ', ' | ', 'g')::tsquery
                  AS query, tsvector_to_array(to_tsvector('english', %(q)s)) AS terms)"""

# Corpus statistics: over the filtered rows, or (no filter) as recorded by the last optimize(), so an
# unfiltered query does not scan the table; computed live while none are recorded.
LIVE_STATS = "SELECT count(*)::float8 AS n, greatest(avg(c.doc_len), 1)::float8 AS avgdl FROM ragtune_chunks c WHERE true {filters}"
RECORDED_STATS = ("SELECT (value->>'n')::float8 AS n, greatest((value->>'avgdl')::float8, 1) AS avgdl FROM ragtune_meta WHERE key = 'bm25' "
                  "UNION ALL (" + LIVE_STATS.format(filters="") + ") LIMIT 1")
RECORD_STATS = """
INSERT INTO ragtune_meta (key, value)
SELECT 'bm25', jsonb_build_object('n', count(*), 'avgdl', coalesce(avg(doc_len), 1)) FROM ragtune_chunks
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
"""

BM25_SQL = f"""
WITH {_QUERY},
stats AS ({{stats}}),
m AS MATERIALIZED (SELECT p.id, p.doc_len, p.lexeme, p.tf FROM ragtune_postings p CROSS JOIN q {{join}}
      WHERE p.lexeme = ANY(q.terms) {{filters}}),
df AS (SELECT lexeme, count(*)::float8 AS df FROM m GROUP BY lexeme),
s AS (SELECT m.id, sum(ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5)) * m.tf * 2.2
                       / (m.tf + 1.2 * (0.25 + 0.75 * m.doc_len / stats.avgdl))) AS score
      FROM m JOIN df USING (lexeme) CROSS JOIN stats GROUP BY m.id ORDER BY score DESC, m.id LIMIT %(k)s)
SELECT {CHUNK_COLUMNS}, c.vector, s.score FROM s JOIN ragtune_chunks c ON c.id = s.id ORDER BY s.score DESC, c.id
"""

TS_RANK_SQL = f"""
WITH {_QUERY}
SELECT {CHUNK_COLUMNS}, c.vector, ts_rank_cd(c.tsv, q.query) AS score
FROM ragtune_chunks c CROSS JOIN q WHERE c.tsv @@ q.query {{filters}}
ORDER BY score DESC, c.id LIMIT %(k)s
"""
