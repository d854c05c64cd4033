using System.Diagnostics.Metrics;
using IoMux.Loop;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace IoMux.Hosting;

/// <summary>Adds IoMux event loops to a generic host.</summary>
public static class EventLoopServiceCollectionExtensions
{
    /// <summary>Runs <see cref="EventLoopHostOptions.LoopCount"/> event loops (default 1) with the host's lifetime:
    /// the host's start makes each loop, calls <paramref name="configure"/> with the service provider, the loop
    /// and its index (before the loop runs, so adding sources there is safe), and runs it on a thread of its
    /// own; the host's stop asks each to exit and waits for it. Each call adds one more
    /// <see cref="EventLoopHostedService"/>.</summary>
    /// <example><code>
    /// builder.Services.AddEventLoop((services, loop, index) => loop.AddIo(listener.SafeHandle, Interest.Readable, OnAccept));
    /// </code></example>
    public static IServiceCollection AddEventLoop(this IServiceCollection services, Action<IServiceProvider, EventLoop, int> configure,
        Action<EventLoopHostOptions>? configureOptions = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new EventLoopHostOptions();
        configureOptions?.Invoke(options);
        services.AddSingleton<IHostedService>(provider => new EventLoopHostedService(
            (loop, index) => configure(provider, loop, index), options,
            provider.GetService<IHostApplicationLifetime>(), provider.GetService<ILogger<EventLoopHostedService>>(),
            provider.GetService<IMeterFactory>())); // the host's (AddMetrics; Host.CreateApplicationBuilder registers it)
        return services;
    }

    /// <summary>One event loop with the host's lifetime, configured by <paramref name="configure"/> (see
    /// <see cref="AddEventLoop(IServiceCollection, Action{IServiceProvider, EventLoop, int}, Action{EventLoopHostOptions}?)"/>).</summary>
    public static IServiceCollection AddEventLoop(this IServiceCollection services, Action<EventLoop> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        return services.AddEventLoop((_, loop, _) => configure(loop));
    }
}
