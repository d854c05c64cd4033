using Microsoft.Extensions.Options;

namespace IoMux.Hosting;

/// <summary>How <see cref="EventLoopHostedService"/> makes and runs its loops. The host's options
/// (<see cref="IOptions{TOptions}"/>): set them in <c>AddEventLoop</c>'s options callback, with
/// <c>services.Configure&lt;EventLoopHostOptions&gt;(...)</c>, or bind them from configuration
/// (<see cref="EventLoopServiceCollectionExtensions.AddEventLoop(Microsoft.Extensions.DependencyInjection.IServiceCollection, Action{IServiceProvider, IoMux.Loop.EventLoop, int}, Microsoft.Extensions.Configuration.IConfiguration)"/>).
/// They are checked when the host starts: a value that cannot work fails the start with an
/// <see cref="OptionsValidationException"/> naming it.</summary>
public sealed class EventLoopHostOptions
{
    /// <summary>How many loops to run, each on a thread of its own (default 1; at least 1). The configure callback
    /// is called once per loop with its index, so each can, say, bind its own SO_REUSEPORT listener. Named as
    /// <c>HttpServerOptions.ThreadCount</c> and the Kestrel transport's <c>IoMuxTransportOptions.ThreadCount</c>.</summary>
    public int ThreadCount { get; set; } = 1;

    /// <summary>The backend by name ("epoll", "poll", "select" ...); null (the default) takes the one
    /// <see cref="PollerFactory.Create()"/> picks: <c>IOMUX_BACKEND</c>, or the best for this OS. A name this
    /// system does not have fails the start.</summary>
    public string? Backend { get; set; }

    /// <summary>When a loop exits or fails on its own while the host runs (its code called <c>Exit</c>, or a
    /// callback threw), stop the application (default true), as a <c>BackgroundService</c> that fails does:
    /// a server whose loop is gone should not look alive. False leaves the host running without that loop.</summary>
    public bool StopApplicationWhenALoopEnds { get; set; } = true;
}

/// <summary>What the host's start checks (ValidateOnStart), and what <see cref="EventLoopHostedService.StartAsync"/>
/// checks when the service is made without a host: values that would otherwise fail later, less clearly (no loop
/// at all, or a backend name found wrong only when the first loop is made).</summary>
internal sealed class EventLoopHostOptionsValidator : IValidateOptions<EventLoopHostOptions>
{
    public ValidateOptionsResult Validate(string? name, EventLoopHostOptions options)
    {
        var failures = new List<string>();
        if (options.ThreadCount < 1)
            failures.Add($"{nameof(EventLoopHostOptions)}.{nameof(EventLoopHostOptions.ThreadCount)} must be at least 1 (was {options.ThreadCount}).");
        if (options.Backend is { } backend)
        {
            try
            {
                PollerFactory.Create(backend).Dispose(); // a name the catalog does not know, or unavailable here
            }
            catch (BackendUnavailableException e)
            {
                failures.Add($"{nameof(EventLoopHostOptions)}.{nameof(EventLoopHostOptions.Backend)}: {e.Message}");
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>Throws <see cref="OptionsValidationException"/> for invalid options (a service made outside a host).</summary>
    public static void ThrowIfInvalid(EventLoopHostOptions options)
    {
        var result = new EventLoopHostOptionsValidator().Validate(Options.DefaultName, options);
        if (result.Failed)
            throw new OptionsValidationException(Options.DefaultName, typeof(EventLoopHostOptions), result.Failures);
    }
}
