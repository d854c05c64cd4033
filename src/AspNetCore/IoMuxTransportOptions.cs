using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace IoMux.AspNetCore;

/// <summary>Where the application code of a connection runs.</summary>
public enum ApplicationScheduling
{
    /// <summary>On the thread pool, as Kestrel's socket transport does: a slow handler never holds up a loop.</summary>
    ThreadPool,
    /// <summary>Inline on the loop thread that read the bytes: no hand-off, fewer context switches; a handler that
    /// blocks holds up every connection of its loop. For handlers that do not block.</summary>
    Inline,
}

/// <summary>Options of the IoMux transport (<see cref="IoMuxWebHostBuilderExtensions.UseIoMux"/>). Checked when the
/// host starts (<see cref="OptionsValidationException"/> for a value that cannot work), and bound from the
/// configuration section <c>IoMux</c> (<see cref="ConfigurationSection"/>) when the host has one.</summary>
public sealed class IoMuxTransportOptions
{
    /// <summary>The configuration section the options are bound from: <c>"IoMux": { "ThreadCount": 2 }</c>.</summary>
    public const string ConfigurationSection = "IoMux";

    /// <summary>Kestrel's socket transport reads this AppContext switch to send FIN instead of RST when a
    /// connection is aborted (SocketTransportOptions.FinOnError); this transport honours the same switch.</summary>
    internal const string FinOnErrorSwitch = "Microsoft.AspNetCore.Server.Kestrel.FinOnError";

    /// <summary>How many event loops (one thread each) serve connections. Default: Kestrel's socket transport's
    /// default I/O queue count (IOQueue.DetermineDefaultCount): the processor count up to 16, half of it beyond 32
    /// processors.</summary>
    public int ThreadCount { get; set; } = DefaultThreadCount(Environment.ProcessorCount);

    /// <summary>The IoMux backend by name ("epoll", "poll", "select" ...), or null for the best one here (an
    /// <c>IOMUX_BACKEND</c> environment variable applies then).</summary>
    public string? Backend { get; set; }

    /// <summary>Creates the poller of each loop (overrides <see cref="Backend"/>). Internal: the tests use it for the
    /// kqueue and ports models, whose backends only a test can wrap in a poller (the Poller constructor is internal to
    /// the IoMux assembly, which grants this one no access).</summary>
    internal Func<Poller>? PollerOverride { get; set; }

    /// <summary>Where application code runs. Default: the thread pool.</summary>
    public ApplicationScheduling Scheduling { get; set; } = ApplicationScheduling.ThreadPool;

    /// <summary>Bytes read from a connection and not yet consumed by the application before the loop stops reading
    /// it (back-pressure: the peer's sends then block in its own kernel). Default 1 MiB; null or 0: no limit.</summary>
    public long? MaxReadBufferSize { get; set; } = 1024 * 1024;

    /// <summary>Bytes written by the application and not yet sent before its writes wait (back-pressure towards
    /// the application). Default 64 KiB; null or 0: no limit.</summary>
    public long? MaxWriteBufferSize { get; set; } = 64 * 1024;

    /// <summary>The listen(2) backlog of sockets the transport creates.</summary>
    public int Backlog { get; set; } = 512;

    /// <summary>TCP_NODELAY on accepted TCP connections (Nagle's algorithm off). Default true, as Kestrel's
    /// SocketTransportOptions.NoDelay.</summary>
    public bool NoDelay { get; set; } = true;

    /// <summary>Abort sends FIN instead of RST: read from the AppContext switch
    /// <c>Microsoft.AspNetCore.Server.Kestrel.FinOnError</c> when the options are made, as Kestrel's socket
    /// transport reads it (it keeps the setting internal too).</summary>
    internal bool FinOnError { get; set; } = AppContext.TryGetSwitch(FinOnErrorSwitch, out bool fin) && fin;

    /// <summary>Kestrel's IOQueue.DetermineDefaultCount (non-Windows): min(processors, 16) up to 32 processors,
    /// processors / 2 beyond.</summary>
    internal static int DefaultThreadCount(int processors) => processors <= 32 ? Math.Min(processors, 16) : processors / 2;

    internal Poller CreatePoller()
    {
        var poller = PollerOverride is { } factory ? factory()
            : Backend is { } name ? PollerFactory.Create(name)
            : PollerFactory.Create();
        poller.UseServerSpin(); // catch the next request awake (Poller.SpinBeforeSleep)
        return poller;
    }
}

/// <summary>What start-up checks: values that would otherwise fail per connection (a negative pipe threshold
/// throws in every connection's PipeOptions) or never serve (no loop).</summary>
internal sealed class IoMuxTransportOptionsValidator : IValidateOptions<IoMuxTransportOptions>
{
    public ValidateOptionsResult Validate(string? name, IoMuxTransportOptions options)
    {
        var failures = new List<string>();
        if (options.ThreadCount < 1)
            failures.Add($"{nameof(IoMuxTransportOptions.ThreadCount)} must be at least 1 (was {options.ThreadCount}).");
        if (options.MaxReadBufferSize < 0)
            failures.Add($"{nameof(IoMuxTransportOptions.MaxReadBufferSize)} must be null or at least 0 (was {options.MaxReadBufferSize}).");
        if (options.MaxWriteBufferSize < 0)
            failures.Add($"{nameof(IoMuxTransportOptions.MaxWriteBufferSize)} must be null or at least 0 (was {options.MaxWriteBufferSize}).");
        if (options.Backlog < 0)
            failures.Add($"{nameof(IoMuxTransportOptions.Backlog)} must be at least 0 (was {options.Backlog}).");
        if (options.Backend is { } backend && options.PollerOverride is null)
        {
            try
            {
                PollerFactory.Create(backend).Dispose(); // a name the catalog does not know, or unavailable here
            }
            catch (BackendUnavailableException e)
            {
                failures.Add($"{nameof(IoMuxTransportOptions.Backend)}: {e.Message}");
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>Throws <see cref="OptionsValidationException"/> for invalid options (a factory made outside a host).</summary>
    public static void ThrowIfInvalid(IoMuxTransportOptions options)
    {
        var result = new IoMuxTransportOptionsValidator().Validate(Options.DefaultName, options);
        if (result.Failed)
            throw new OptionsValidationException(Options.DefaultName, typeof(IoMuxTransportOptions), result.Failures);
    }
}

/// <summary>Binds the options from the configuration section <see cref="IoMuxTransportOptions.ConfigurationSection"/>
/// (appsettings.json, environment variables <c>IoMux__ThreadCount</c>, the command line), by hand rather than with the
/// reflection binder, so trimmed and native-AOT apps bind them too. A value that does not parse fails the start with
/// an <see cref="OptionsValidationException"/> naming the key.</summary>
internal sealed class IoMuxTransportConfiguration(IConfiguration? configuration = null) : IConfigureOptions<IoMuxTransportOptions>
{
    public void Configure(IoMuxTransportOptions options)
    {
        if (configuration?.GetSection(IoMuxTransportOptions.ConfigurationSection) is not { } section)
            return;
        var failures = new List<string>();
        if (section[nameof(options.ThreadCount)] is { } threads)
            options.ThreadCount = Parse(nameof(options.ThreadCount), threads, int.TryParse, options.ThreadCount);
        if (section[nameof(options.Backend)] is { Length: > 0 } backend)
            options.Backend = backend;
        if (section[nameof(options.Scheduling)] is { } scheduling)
        {
            if (Enum.TryParse<ApplicationScheduling>(scheduling, ignoreCase: true, out var value) && Enum.IsDefined(value))
                options.Scheduling = value;
            else
                failures.Add($"{Key(nameof(options.Scheduling))}: \"{scheduling}\" is not one of {string.Join(", ", Enum.GetNames<ApplicationScheduling>())}.");
        }
        if (section[nameof(options.MaxReadBufferSize)] is { } read)
            options.MaxReadBufferSize = read.Length == 0 ? null : Parse(nameof(options.MaxReadBufferSize), read, long.TryParse, 0L);
        if (section[nameof(options.MaxWriteBufferSize)] is { } write)
            options.MaxWriteBufferSize = write.Length == 0 ? null : Parse(nameof(options.MaxWriteBufferSize), write, long.TryParse, 0L);
        if (section[nameof(options.Backlog)] is { } backlog)
            options.Backlog = Parse(nameof(options.Backlog), backlog, int.TryParse, options.Backlog);
        if (section[nameof(options.NoDelay)] is { } noDelay)
            options.NoDelay = Parse(nameof(options.NoDelay), noDelay, (string s, NumberStyles _, IFormatProvider _, out bool b) => bool.TryParse(s, out b), options.NoDelay);
        if (failures.Count > 0)
            throw new OptionsValidationException(Options.DefaultName, typeof(IoMuxTransportOptions), failures);

        T Parse<T>(string name, string text, TryParser<T> parse, T fallback)
        {
            if (parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
                return value;
            failures.Add($"{Key(name)}: \"{text}\" is not a valid {typeof(T).Name}.");
            return fallback;
        }
    }

    private delegate bool TryParser<T>(string text, NumberStyles style, IFormatProvider provider, out T value);

    private static string Key(string name) => $"{IoMuxTransportOptions.ConfigurationSection}:{name}";
}
