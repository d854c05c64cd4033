using System.Diagnostics.Metrics;
using IoMux.Hosting;
using IoMux.Loop;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace IoMux.Tests.Hosting;

/// <summary>A host's loops are counted in an IoMux.Loop meter made by the host's <see cref="IMeterFactory"/> (its
/// scope is the factory, and it goes with the host), not in the process-wide one.</summary>
[NonParallelizable]
public sealed class HostMetricsTests
{
    /// <summary>What a listener saw of the IoMux.Loop meters: each instrument's meter, and iomux.loop.count per meter.</summary>
    private sealed class LoopMeters : IDisposable
    {
        private readonly MeterListener _listener = new();
        public readonly List<Instrument> Published = [];
        public readonly Dictionary<Meter, long> LoopCount = [];
        public readonly List<Meter> Completed = [];

        public LoopMeters()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name != LoopMetrics.MeterName)
                    return;
                lock (Published)
                    Published.Add(instrument);
                if (instrument.Name == "iomux.loop.count")
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.MeasurementsCompleted = (instrument, _) =>
            {
                lock (Published)
                    Completed.Add(instrument.Meter);
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => LoopCount[instrument.Meter] = value);
            _listener.Start();
        }

        public void Collect()
        {
            LoopCount.Clear();
            _listener.RecordObservableInstruments();
        }

        public void Dispose() => _listener.Dispose();
    }

    [Test, CancelAfter(60_000)]
    public async Task TheHostsLoopsAreCountedInTheMeterItsFactoryMade(CancellationToken token)
    {
        using var meters = new LoopMeters();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Services.AddEventLoop((_, _, _) => { }, options => options.ThreadCount = 2);
        var host = builder.Build();
        var factory = host.Services.GetRequiredService<IMeterFactory>();
        await host.StartAsync(token);
        Meter hostMeter;
        try
        {
            Instrument[] scoped;
            lock (meters.Published)
                scoped = meters.Published.Where(i => ReferenceEquals(i.Meter.Scope, factory)).ToArray();
            Assert.That(scoped.Select(i => i.Name), Is.SupersetOf(new[] { "iomux.loop.count", "iomux.loop.iterations", "iomux.loop.lag" }),
                "the IoMux.Loop instruments of the host's factory");
            hostMeter = scoped[0].Meter;
            meters.Collect();
            Assert.That(meters.LoopCount[hostMeter], Is.EqualTo(2), "the host's two loops, in the host's meter");
            var processWide = meters.LoopCount.Keys.Where(m => m.Scope is null).ToArray();
            Assert.That(processWide.Select(m => meters.LoopCount[m]).Sum() + 2, Is.EqualTo(meters.LoopCount.Values.Sum()),
                "counted once: the host's loops left the process-wide meter");
        }
        finally
        {
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(token);
            stop.CancelAfter(TimeSpan.FromSeconds(10));
            await host.StopAsync(stop.Token);
            host.Dispose();
        }
        lock (meters.Published)
            Assert.That(meters.Completed, Has.Member(hostMeter), "the host's meter is disposed with the host");
    }
}
