package pgprocess_test

const envCrashSchema = "PGPROCESS_TEST_CRASH_SCHEMA"

func runUntilKilled() int { return 0 }
