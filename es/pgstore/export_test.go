package pgstore

// ReadAllSQL returns the statement ReadAll runs, for EXPLAIN in tests.
func ReadAllSQL(s *Store) string { return s.q.readAll }
