using System.Diagnostics.Metrics;

namespace IoMux.Loop;

/// <summary>The <c>IoMux.Loop</c> meter: what every <see cref="EventLoop"/> of the process does, summed over the
/// loops (<c>dotnet-counters monitor --counters IoMux.Loop</c>, or any <see cref="MeterListener"/> such as
/// OpenTelemetry's). Observable instruments only: the loops keep plain fields, read when a listener collects; the
/// wait time alone needs a clock read per iteration, taken only while a listener has that instrument on.</summary>
public static class LoopMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "IoMux.Loop";

    private const int Iterations = 0, WaitNanoseconds = 1, Dispatches = 2, IoSources = 3;

    internal static readonly MeteredInstances<EventLoop> Loops = new(
        loop => loop.Iterations, loop => loop.WaitNanoseconds, loop => loop.Dispatches, loop => loop.IoSourceCount);

    private static readonly Meter Meter = new(MeterName);

    private static readonly ObservableCounter<double> WaitTime = Meter.CreateObservableCounter("iomux.loop.wait_time",
        () => Loops.Sum(WaitNanoseconds) / 1e9, "s", "Time the loops spent blocked in the poller's wait (measured while this instrument is listened to).");

    static LoopMetrics()
    {
        Meter.CreateObservableCounter("iomux.loop.iterations", () => Loops.Sum(Iterations), "{iteration}",
            "Loop iterations completed (one wait and the dispatch of what it found).");
        Meter.CreateObservableCounter("iomux.loop.dispatches", () => Loops.Sum(Dispatches), "{callback}",
            "Callbacks run: ready sources, due timers, defer, post and exit sources, posted actions.");
        Meter.CreateObservableUpDownCounter("iomux.loop.io_sources", () => Loops.Sum(IoSources, includeRetired: false), "{source}",
            "I/O and child sources registered with the loops' pollers.");
        Meter.CreateObservableUpDownCounter("iomux.loop.count", () => Loops.Count, "{loop}", "Loops alive (created and not disposed).");
    }

    /// <summary>True while a listener wants the wait time: the loops then read the clock before each wait.</summary>
    internal static bool MeasuresWaitTime => WaitTime.Enabled;
}
