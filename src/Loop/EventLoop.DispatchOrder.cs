namespace IoMux.Loop;

// sd-event's dispatch order, kept to measure it against IoMux's (docs/LOOP.md, "Differences from sd-event", row 3;
// bench/IoMux.Benchmarks, LoopDispatchOrder): sd_event_dispatch runs the one pending source of the highest priority;
// the next sd_event_run's sd_event_prepare runs the prepare callbacks, finds sources still pending and goes straight to
// sd_event_dispatch, without sd_event_wait: nothing new is polled, no timer is collected, until the pending queue is
// empty. IoMux runs a whole iteration's pending sources as one batch. Internal: the batch is the loop's order.
public sealed partial class EventLoop
{
    private bool _onePerIteration;

    /// <summary>True: one callback per iteration, as sd-event dispatches; the rest stay pending, and the next iterations
    /// dispatch them one by one without waiting or collecting anything new. For the measurement only; set it before the
    /// loop runs.</summary>
    internal bool DispatchOnePerIteration
    {
        get => _onePerIteration;
        set => _onePerIteration = value;
    }

    /// <summary>Keeps the pending entries from <paramref name="from"/> on for the next iteration, at the front, in order.</summary>
    private void KeepLeftover(int from)
    {
        int left = _pendingCount - from;
        Array.Copy(_pending, from, _pending, 0, left);
        Array.Clear(_pending, left, _pendingCount - left);
        _pendingCount = left;
    }
}
