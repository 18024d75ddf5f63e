package consume_test

import (
	"context"
	"os"
	"os/signal"
)

func signalContext(ctx context.Context, sig ...os.Signal) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, sig...)
}
