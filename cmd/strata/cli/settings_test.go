package cli_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/stratadev/strata/cmd/strata/cli"
)

// settingsOf runs an application's own command, mounted beside the CLI's,
// with args and env, and returns what cli.ReadSettings gave it and the exit
// code and error output of cli.Main.
func settingsOf(t *testing.T, env map[string]string, args ...string) (cli.Settings, int, string, error) {
	t.Helper()
	return settingsWith(t, "", env, args...)
}

// settingsWith is settingsOf for an application whose Config.Schema is
// schema.
func settingsWith(t *testing.T, schema string, env map[string]string, args ...string) (cli.Settings, int, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := cli.New(cli.Config{Name: "app", Schema: schema, Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }})
	var got cli.Settings
	var gotErr error
	ran := false
	serve := &cobra.Command{Use: "serve", RunE: func(cmd *cobra.Command, _ []string) error {
		ran = true
		got, gotErr = cli.ReadSettings(cmd)
		return gotErr
	}}
	root.AddCommand(serve)
	code := cli.Main(context.Background(), root, append([]string{"serve"}, args...))
	if !ran && code == cli.ExitOK {
		t.Fatalf("serve %v did not run", args)
	}
	return got, code, stderr.String(), gotErr
}

func TestReadSettings(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		cli.EnvDatabaseURL:      "postgres://env@127.0.0.1:5432/env",
		cli.EnvSchema:           "env_schema",
		cli.EnvElasticsearchURL: "http://127.0.0.1:9201",
		cli.EnvESDBURL:          "esdb://127.0.0.1:2113?tls=false",
		cli.EnvKafkaBrokers:     "127.0.0.1:9092, 127.0.0.1:9093",
	}
	envBrokers := []string{"127.0.0.1:9092", "127.0.0.1:9093"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want cli.Settings
	}{
		{
			name: "defaults",
			want: cli.Settings{Schema: "strata", ReadSchema: "strata"},
		},
		{
			name: "environment over defaults",
			env:  env,
			want: cli.Settings{
				DatabaseURL: env[cli.EnvDatabaseURL], ESDBURL: env[cli.EnvESDBURL],
				ElasticsearchURL: env[cli.EnvElasticsearchURL], KafkaBrokers: envBrokers,
				Schema: "env_schema", ReadSchema: "env_schema",
			},
		},
		{
			name: "flags over environment",
			env:  env,
			args: []string{
				"--database-url", "postgres://flag@127.0.0.1:5432/flag", "--schema", "flag_schema",
				"--elasticsearch-url", "http://127.0.0.1:9202", "--esdb-url", "esdb://127.0.0.1:2114?tls=false",
				"--read-schema", "reads", "--kafka-brokers", "kafka-1:9092,kafka-2:9092",
			},
			want: cli.Settings{
				DatabaseURL: "postgres://flag@127.0.0.1:5432/flag", ESDBURL: "esdb://127.0.0.1:2114?tls=false",
				ElasticsearchURL: "http://127.0.0.1:9202", KafkaBrokers: []string{"kafka-1:9092", "kafka-2:9092"},
				Schema: "flag_schema", ReadSchema: "reads",
			},
		},
		{
			name: "a flag given as its default still wins",
			env:  env,
			args: []string{"--schema", "strata"},
			want: cli.Settings{
				DatabaseURL: env[cli.EnvDatabaseURL], ESDBURL: env[cli.EnvESDBURL],
				ElasticsearchURL: env[cli.EnvElasticsearchURL], KafkaBrokers: envBrokers,
				Schema: "strata", ReadSchema: "strata",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, code, stderr, err := settingsOf(t, tc.env, tc.args...)
			if err != nil || code != cli.ExitOK {
				t.Fatalf("ReadSettings: %v (exit %d, stderr %q)", err, code, stderr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ReadSettings:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// An application's own schema is the default of --schema; the
// environment and the flag still win over it.
func TestReadSettingsSchemaDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, nil, "own"},
		{map[string]string{cli.EnvSchema: "env_schema"}, nil, "env_schema"},
		{map[string]string{cli.EnvSchema: "env_schema"}, []string{"--schema", "flag_schema"}, "flag_schema"},
	} {
		got, code, stderr, err := settingsWith(t, "own", tc.env, tc.args...)
		if err != nil || code != cli.ExitOK || got.Schema != tc.want || got.ReadSchema != tc.want {
			t.Errorf("env %v, args %v: schema %q, read schema %q (%v, exit %d, %s); want %q", tc.env, tc.args, got.Schema, got.ReadSchema, err, code, stderr, tc.want)
		}
	}
}

func TestReadSettingsBadValues(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("s", 64)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string // in the error
	}{
		{"schema flag", nil, []string{"--schema", long}, `invalid --schema "` + long + `"`},
		{"schema env", map[string]string{cli.EnvSchema: long}, nil, `invalid STRATA_SCHEMA "` + long + `"`},
		{"read schema flag", nil, []string{"--read-schema", "a\x00b"}, `invalid --read-schema`},
		{"database URL flag", nil, []string{"--database-url", "postgres://bob:s3cret@127.0.0.1:x/app"}, "invalid --database-url: "},
		{"database URL env", map[string]string{cli.EnvDatabaseURL: "postgres://bob:s3cret@127.0.0.1:x/app"}, nil, "invalid STRATA_DATABASE_URL: "},
		{"kafka brokers flag", nil, []string{"--kafka-brokers", "kafka-1:9092,,kafka-2:9092"}, `invalid --kafka-brokers "kafka-1:9092,,kafka-2:9092": an empty broker address`},
		{"kafka brokers env", map[string]string{cli.EnvKafkaBrokers: "kafka-1:9092, "}, nil, `invalid STRATA_KAFKA_BROKERS "kafka-1:9092,": an empty broker address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, code, stderr, _ := settingsOf(t, tc.env, tc.args...)
			if code != cli.ExitUsage {
				t.Errorf("exit code %d, want %d (usage); stderr %q", code, cli.ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tc.want)
			}
			if strings.Contains(stderr, "s3cret") {
				t.Errorf("the password is in the error: %q", stderr)
			}
		})
	}
}

// TestReadSettingsDirect calls ReadSettings on a command whose root's own
// hooks were replaced, as an application may do: it resolves by itself.
func TestReadSettingsDirect(t *testing.T) {
	t.Parallel()
	root := cli.New(cli.Config{Getenv: func(k string) string {
		return map[string]string{cli.EnvDatabaseURL: "postgres://env@127.0.0.1/env"}[k]
	}})
	root.PersistentPreRunE = nil
	var got cli.Settings
	var err error
	root.AddCommand(&cobra.Command{Use: "serve", Run: func(cmd *cobra.Command, _ []string) {
		got, err = cli.ReadSettings(cmd)
	}})
	root.SetArgs([]string{"serve", "--schema", "mine"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	want := cli.Settings{DatabaseURL: "postgres://env@127.0.0.1/env", Schema: "mine", ReadSchema: "mine"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadSettings = %+v, %v; want %+v, nil", got, err, want)
	}
}

func TestReadSettingsNotMounted(t *testing.T) {
	t.Parallel()
	cmd := &cobra.Command{Use: "serve"}
	if _, err := cli.ReadSettings(cmd); !errors.Is(err, cli.ErrNotMounted) {
		t.Errorf("ReadSettings of a command outside the CLI: %v, want ErrNotMounted", err)
	}
	other := &cobra.Command{Use: "other"}
	other.PersistentFlags().String("database-url", "", "")
	other.AddCommand(cmd)
	if _, err := cli.ReadSettings(cmd); !errors.Is(err, cli.ErrNotMounted) {
		t.Errorf("ReadSettings below a root with its own --database-url: %v, want ErrNotMounted", err)
	}
}
