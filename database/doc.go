// Package database owns coderd's PostgreSQL schema and queries: the embedded
// migrations (applied with golang-migrate), the sqlc-generated query layer
// (Queries, Querier, models), a connection pool opener and Store, which adds
// transactions with serialization-failure retries on top of the queries.
//
// Regenerate the query layer with `make gen` (database/generate.sh) after
// editing database/migrations or database/queries.
package database
