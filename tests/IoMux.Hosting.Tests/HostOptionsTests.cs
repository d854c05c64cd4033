using IoMux.Hosting;
using IoMux.Loop;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace IoMux.Tests.Hosting;

/// <summary>EventLoopHostOptions are the host's options: bound from configuration, added to by callbacks, and
/// checked when the host starts (a value that cannot work fails the start, naming the value).</summary>
[NonParallelizable]
public sealed class HostOptionsTests
{
    private const string Section = "IoMux:EventLoop";

    private static HostApplicationBuilder NewBuilder(Dictionary<string, string?> settings)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(settings);
        return builder;
    }

    private static EventLoopHostedService Service(IHost host) =>
        host.Services.GetServices<IHostedService>().OfType<EventLoopHostedService>().Single();

    [Test, CancelAfter(60_000)]
    public async Task TheOptionsBindFromAConfigurationSection(CancellationToken token)
    {
        var builder = NewBuilder(new()
        {
            [$"{Section}:ThreadCount"] = "3",
            [$"{Section}:Backend"] = "poll",
            [$"{Section}:StopApplicationWhenALoopEnds"] = "false",
        });
        var indexes = new List<int>();
        builder.Services.AddEventLoop((_, _, index) => indexes.Add(index), builder.Configuration.GetSection(Section));
        using var host = builder.Build();
        await host.StartAsync(token);
        try
        {
            var options = host.Services.GetRequiredService<IOptions<EventLoopHostOptions>>().Value;
            Assert.That((options.ThreadCount, options.Backend, options.StopApplicationWhenALoopEnds), Is.EqualTo((3, "poll", false)));
            Assert.That(indexes, Is.EqualTo(new[] { 0, 1, 2 }), "one configure call per loop, from the bound ThreadCount");
            Assert.That(Service(host).Loops.Select(l => l.Poller.Capabilities.Name), Is.EqualTo(new[] { "poll", "poll", "poll" }), "the bound backend");
        }
        finally
        {
            await host.StopAsync(token);
        }
    }

    [Test, CancelAfter(60_000)]
    public async Task TheOptionsCallbackAndServicesConfigureAddToTheSameOptions(CancellationToken token)
    {
        var builder = NewBuilder(new() { [$"{Section}:ThreadCount"] = "4" });
        builder.Services.Configure<EventLoopHostOptions>(o => o.Backend = "poll");
        builder.Services.AddEventLoop((_, _, _) => { }, o => o.ThreadCount = 2);
        using var host = builder.Build();
        await host.StartAsync(token);
        try
        {
            Assert.That(Service(host).Loops.Select(l => l.Poller.Capabilities.Name), Is.EqualTo(new[] { "poll", "poll" }),
                "the count from AddEventLoop's callback, the backend from services.Configure; the section is not bound unless passed");
        }
        finally
        {
            await host.StopAsync(token);
        }
    }

    [TestCase("ThreadCount", "0", "EventLoopHostOptions.ThreadCount must be at least 1 (was 0).")]
    [TestCase("Backend", "no-such-backend", "EventLoopHostOptions.Backend: ")]
    [CancelAfter(60_000)]
    public async Task AnInvalidValueFailsTheHostsStartAndNamesIt(string key, string value, string message, CancellationToken token)
    {
        var builder = NewBuilder(new() { [$"{Section}:{key}"] = value });
        bool configured = false;
        var earlier = new StartRecorder();
        builder.Services.AddSingleton<IHostedService>(earlier); // registered first, so started first if the host starts at all
        builder.Services.AddEventLoop((_, _, _) => configured = true, builder.Configuration.GetSection(Section));
        using var host = builder.Build();
        var e = (await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync(token)))!;
        Assert.That(e.Message, Does.Contain(message));
        Assert.That((configured, earlier.Started), Is.EqualTo((false, false)),
            "validated when the host starts (the options validator), before any hosted service starts, not when the loops are made");
    }

    private sealed class StartRecorder : IHostedService
    {
        public bool Started;
        public Task StartAsync(CancellationToken cancellationToken) { Started = true; return Task.CompletedTask; }
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    [Test, CancelAfter(60_000)]
    public async Task AValueThatDoesNotConvertFailsTheHostsStart(CancellationToken token)
    {
        var builder = NewBuilder(new() { [$"{Section}:ThreadCount"] = "many" });
        builder.Services.AddEventLoop((_, _, _) => { }, builder.Configuration.GetSection(Section));
        using var host = builder.Build();
        var e = (await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync(token)))!;
        Assert.That(e.Message, Does.Contain("ThreadCount").And.Contain("many"));
    }

    [Test]
    public async Task AServiceMadeWithoutAHostChecksItsOptionsWhenItStarts()
    {
        bool configured = false;
        using var service = new EventLoopHostedService((_, _) => configured = true, Options.Create(new EventLoopHostOptions { ThreadCount = 0 }));
        var e = (await Assert.ThrowsAsync<OptionsValidationException>(() => service.StartAsync(CancellationToken.None)))!;
        Assert.That(e.Message, Does.Contain("EventLoopHostOptions.ThreadCount must be at least 1 (was 0)."));
        Assert.That((configured, service.Loops.Count), Is.EqualTo((false, 0)));
    }
}
