using System.Diagnostics.Metrics;
using System.Net;
using IoMux.Loop;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace IoMux.Tests.AspNetCore;

/// <summary>
/// What an OpenTelemetry user charts after swapping in <c>UseIoMux()</c> (issue 23 item 6): Kestrel's own
/// <c>kestrel.connection.duration</c> and ASP.NET Core's <c>http.server.request.duration</c> carry the same attributes
/// on IoMux's transport as on Kestrel's sockets (the endpoint attributes come from the transport's connection
/// features), and the transport's loops are counted in an <c>IoMux.Loop</c> meter made by the host's
/// <see cref="IMeterFactory"/>. Each test runs on Kestrel's socket transport (the reference) and on IoMux's.
/// </summary>
[TestFixtureSource(typeof(ApplicationTargets), nameof(ApplicationTargets.All))]
[NonParallelizable]
public sealed class TransportMetricsTests(TransportTarget target)
{
    private sealed record Measured(Meter Meter, string Instrument, string? Unit, double Value, Dictionary<string, object?> Tags);

    /// <summary>Every measurement of the meters an OpenTelemetry user would add, with its meter (for the scope).</summary>
    private sealed class Measurements : IDisposable
    {
        private static readonly string[] Meters = ["Microsoft.AspNetCore.Server.Kestrel", "Microsoft.AspNetCore.Hosting", LoopMetrics.MeterName];
        private readonly MeterListener _listener = new();
        private readonly List<Measured> _all = [];

        public Measurements()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (Meters.Contains(instrument.Meter.Name))
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<double>(Record);
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, state) => Record(instrument, value, tags, state));
            _listener.SetMeasurementEventCallback<int>((instrument, value, tags, state) => Record(instrument, value, tags, state));
            _listener.Start();
        }

        private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
        {
            var copy = new Dictionary<string, object?>();
            foreach (var tag in tags)
                copy[tag.Key] = tag.Value;
            lock (_all)
                _all.Add(new Measured(instrument.Meter, instrument.Name, instrument.Unit, value, copy));
        }

        public void Observe() => _listener.RecordObservableInstruments();

        /// <summary>The measurements of <paramref name="instrument"/> made by meters of <paramref name="scope"/> (one host's).</summary>
        public List<Measured> Of(string instrument, object scope)
        {
            lock (_all)
                return _all.Where(m => m.Instrument == instrument && ReferenceEquals(m.Meter.Scope, scope)).ToList();
        }

        public void Dispose() => _listener.Dispose();
    }

    [OneTimeSetUp]
    public void Supported()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
    }

    [Test, CancelAfter(30_000)]
    public async Task KestrelsConnectionAndRequestDurationsCarryTheTransportsEndpoint(CancellationToken token)
    {
        using var measurements = new Measurements();
        var app = await TestApp.StartAsync(target);
        var scope = app.Services.GetRequiredService<IMeterFactory>();
        try
        {
            using (var client = new HttpClient { BaseAddress = app.BaseAddress })
            {
                Assert.That(await client.GetStringAsync("/hello", token), Is.EqualTo("Hello, World!"));
                Assert.That((await client.GetAsync("/missing", token)).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            } // the client's connection closes: Kestrel records its duration
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (measurements.Of("kestrel.connection.duration", scope).Count == 0 && DateTime.UtcNow < deadline)
                await Task.Delay(20, token);
        }
        finally
        {
            await app.DisposeAsync();
        }
        var connection = measurements.Of("kestrel.connection.duration", scope);
        Assert.That(connection, Has.Count.EqualTo(1), "one connection, recorded when it closed");
        Assert.Multiple(() =>
        {
            Assert.That(connection[0].Unit, Is.EqualTo("s"));
            Assert.That(connection[0].Tags["network.transport"], Is.EqualTo("tcp"));
            Assert.That(connection[0].Tags["network.type"], Is.EqualTo("ipv4"));
            Assert.That(connection[0].Tags["server.address"], Is.EqualTo("127.0.0.1"));
            Assert.That(connection[0].Tags["server.port"], Is.EqualTo(app.Port));
            Assert.That(connection[0].Tags["network.protocol.version"], Is.EqualTo("1.1"));
            Assert.That(connection[0].Tags, Does.Not.ContainKey("error.type"), "the client closed an idle connection: no error");
        });
        var requests = measurements.Of("http.server.request.duration", scope);
        Assert.That(requests.Select(r => r.Tags["http.response.status_code"]), Is.EquivalentTo(new object[] { 200, 404 }));
        Assert.That(requests.Select(r => r.Tags["url.scheme"]).Distinct(), Is.EqualTo(new[] { "http" }));
    }

    [Test, CancelAfter(30_000)]
    public async Task TheTransportsLoopsAreCountedInTheHostsMeter(CancellationToken token)
    {
        using var measurements = new Measurements();
        await using var app = await TestApp.StartAsync(target, threads: 3);
        var scope = app.Services.GetRequiredService<IMeterFactory>();
        using (var client = new HttpClient { BaseAddress = app.BaseAddress })
            Assert.That(await client.GetStringAsync("/hello", token), Is.EqualTo("Hello, World!")); // the transport starts its loops at the bind
        measurements.Observe();
        var loops = measurements.Of("iomux.loop.count", scope);
        if (target.Backend is null)
        {
            Assert.That(loops, Is.Empty, "Kestrel's sockets run no IoMux loop");
            return;
        }
        Assert.That(loops, Has.Count.EqualTo(1), "one IoMux.Loop meter made by the host's factory");
        Assert.That(loops[0].Value, Is.EqualTo(3), "the transport's three loops");
    }

    /// <summary>The setup docs/METRICS.md shows: OpenTelemetry's SDK with <c>AddMeter("IoMux.*")</c> exports the
    /// host's IoMux.Loop instruments (the wildcard finds the meter the host's factory made) beside Kestrel's.</summary>
    [Test, CancelAfter(30_000)]
    public async Task OpenTelemetryExportsTheIoMuxMetersWithAWildcard(CancellationToken token)
    {
        var exported = new List<Metric>();
        await using var app = await ApplicationHost.StartAsync(target, ApplicationHost.Loopback(HttpProtocols.Http1), services =>
            services.AddOpenTelemetry().WithMetrics(metrics => metrics
                .AddMeter("IoMux.*")
                .AddMeter("Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")
                .AddInMemoryExporter(exported)),
            web => web.MapGet("/hello", () => "Hello"));
        using (var client = new HttpClient { BaseAddress = app.BaseAddress })
            Assert.That(await client.GetStringAsync("/hello", token), Is.EqualTo("Hello"));
        Assert.That(app.Services.GetRequiredService<MeterProvider>().ForceFlush(10_000), Is.True);
        var names = exported.Select(m => m.Name).ToHashSet();
        Assert.That(names, Does.Contain("http.server.request.duration"));
        if (target.Backend is null)
            return;
        Assert.That(names, Is.SupersetOf(new[] { "iomux.loop.count", "iomux.loop.iterations", "iomux.loop.lag" }));
        // The host's meter counts the transport's two loops (the process-wide one, if exported too, counts others).
        var loopCounts = exported.Where(m => m.Name == "iomux.loop.count").SelectMany(Points).ToList();
        Assert.That(loopCounts, Does.Contain(2L), string.Join(", ", loopCounts));
    }

    private static IEnumerable<long> Points(Metric metric)
    {
        foreach (ref readonly var point in metric.GetMetricPoints())
            yield return point.GetSumLong();
    }
}
