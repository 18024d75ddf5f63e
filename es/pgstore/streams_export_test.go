package pgstore

// ListStreamsSQL returns the statement ListStreams runs, for EXPLAIN in
// tests.
func ListStreamsSQL(s *Store) string { return s.expand(listStreamsSQL) }
