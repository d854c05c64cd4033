using System.Diagnostics.Metrics;

namespace IoMux.Loop;

/// <summary>The <c>IoMux.Loop</c> meter: what every <see cref="EventLoop"/> of the process does, summed over the
/// loops (<c>dotnet-counters monitor --counters IoMux.Loop</c>, or any <see cref="MeterListener"/> such as
/// OpenTelemetry's). Observable instruments only: the loops keep plain fields, read when a listener collects; the
/// wait time alone needs a clock read per iteration, taken only while a listener has that instrument on. The meter
/// is made with the first loop of the process, or later when the process defers it (<see cref="MeterPublication"/>).</summary>
public static class LoopMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "IoMux.Loop";

    private const int Iterations = 0, WaitNanoseconds = 1, Dispatches = 2, IoSources = 3;

    internal static readonly MeteredInstances<EventLoop> Loops = new(Publish,
        loop => loop.Iterations, loop => loop.WaitNanoseconds, loop => loop.Dispatches, loop => loop.IoSourceCount);

    private static Instrument? s_waitTime; // null until the meter is made

    /// <summary>Makes the meter and its instruments (once: <see cref="MeteredInstances{T}"/> asks with its first
    /// instance). The runtime holds a meter until it is disposed; this one lives as long as the process.</summary>
    private static void Publish()
    {
        var meter = new Meter(MeterName);
        meter.CreateObservableCounter("iomux.loop.iterations", () => Loops.Sum(Iterations), "{iteration}",
            "Loop iterations completed (one wait and the dispatch of what it found).");
        meter.CreateObservableCounter("iomux.loop.dispatches", () => Loops.Sum(Dispatches), "{callback}",
            "Callbacks run: ready sources, due timers, defer, post and exit sources, posted actions.");
        meter.CreateObservableUpDownCounter("iomux.loop.io_sources", () => Loops.Sum(IoSources, includeRetired: false), "{source}",
            "I/O and child sources registered with the loops' pollers.");
        meter.CreateObservableUpDownCounter("iomux.loop.count", () => Loops.Count, "{loop}", "Loops alive (created and not disposed).");
        s_waitTime = meter.CreateObservableCounter("iomux.loop.wait_time", () => Loops.Sum(WaitNanoseconds) / 1e9, "s",
            "Time the loops spent blocked in the poller's wait (measured while this instrument is listened to).");
    }

    /// <summary>True while a listener wants the wait time: the loops then read the clock before each wait.</summary>
    internal static bool MeasuresWaitTime => s_waitTime is { Enabled: true };
}
