using System.Diagnostics.Metrics;
using IoMux.Loop;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace IoMux.Hosting;

/// <summary>Adds IoMux event loops to a generic host.</summary>
public static class EventLoopServiceCollectionExtensions
{
    /// <summary>Runs <see cref="EventLoopHostOptions.ThreadCount"/> event loops (default 1) with the host's lifetime:
    /// the host's start makes each loop, calls <paramref name="configure"/> with the service provider, the loop
    /// and its index (before the loop runs, so adding sources there is safe), and runs it on a thread of its
    /// own; the host's stop asks each to exit and waits for it. Each call adds one more
    /// <see cref="EventLoopHostedService"/>; all of them read the host's one <see cref="EventLoopHostOptions"/>
    /// (<see cref="IOptions{TOptions}"/>), which <paramref name="configureOptions"/> adds to and the host's start
    /// validates.</summary>
    /// <example><code>
    /// builder.Services.AddEventLoop((services, loop, index) => loop.AddIo(listener.SafeHandle, Interest.Readable, OnAccept));
    /// </code></example>
    /// <exception cref="PlatformNotSupportedException">Windows (<see cref="PollerFactory.IsSupported"/> is false).</exception>
    public static IServiceCollection AddEventLoop(this IServiceCollection services, Action<IServiceProvider, EventLoop, int> configure,
        Action<EventLoopHostOptions>? configureOptions = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        // At registration, not at the host's start: the failure names the app's own call.
        if (!PollerFactory.IsSupported)
            throw new PlatformNotSupportedException("AddEventLoop: IoMux needs a POSIX system (Linux, macOS, the BSDs, illumos or Solaris); it does not run on Windows.");
        var options = services.AddOptions<EventLoopHostOptions>().ValidateOnStart();
        if (configureOptions is not null)
            options.Configure(configureOptions);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<EventLoopHostOptions>, EventLoopHostOptionsValidator>());
        services.AddSingleton<IHostedService>(provider => new EventLoopHostedService(
            (loop, index) => configure(provider, loop, index), provider.GetRequiredService<IOptions<EventLoopHostOptions>>(),
            provider.GetService<IHostApplicationLifetime>(), provider.GetService<ILogger<EventLoopHostedService>>(),
            provider.GetService<IMeterFactory>())); // the host's (AddMetrics; Host.CreateApplicationBuilder registers it)
        return services;
    }

    /// <summary>As <see cref="AddEventLoop(IServiceCollection, Action{IServiceProvider, EventLoop, int}, Action{EventLoopHostOptions}?)"/>,
    /// with the options bound from <paramref name="configuration"/> (a section such as
    /// <c>builder.Configuration.GetSection("IoMux:EventLoop")</c> holding <c>ThreadCount</c>, <c>Backend</c>,
    /// <c>StopApplicationWhenALoopEnds</c>). The binding is source-generated, so trimmed and native-AOT apps bind too;
    /// a value that does not convert, or one the validation refuses, fails the host's start.</summary>
    public static IServiceCollection AddEventLoop(this IServiceCollection services, Action<IServiceProvider, EventLoop, int> configure,
        IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        services.Configure<EventLoopHostOptions>(configuration);
        return services.AddEventLoop(configure);
    }

    /// <summary>One event loop with the host's lifetime, configured by <paramref name="configure"/> (see
    /// <see cref="AddEventLoop(IServiceCollection, Action{IServiceProvider, EventLoop, int}, Action{EventLoopHostOptions}?)"/>).</summary>
    public static IServiceCollection AddEventLoop(this IServiceCollection services, Action<EventLoop> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        return services.AddEventLoop((_, loop, _) => configure(loop));
    }
}
