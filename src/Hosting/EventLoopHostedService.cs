using System.Diagnostics.Metrics;
using IoMux.Loop;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace IoMux.Hosting;

/// <summary>
/// Runs IoMux event loops with a generic host's lifetime. <see cref="StartAsync"/> makes the loops, calls the
/// configure callback for each (on the starting thread, before the loop runs: adding sources is safe there)
/// and starts each with <see cref="EventLoop.RunAsync"/>, on a thread of its own. <see cref="StopAsync"/> asks
/// every loop to exit (through its wake: exit sources run on the loop thread) and waits for them, until the
/// host's stop token gives up; when it returns, the threads of the loops that exited have ended. Disposal
/// disposes the loops that exited.
/// Register it with <see cref="EventLoopServiceCollectionExtensions.AddEventLoop(Microsoft.Extensions.DependencyInjection.IServiceCollection, Action{IServiceProvider, EventLoop, int}, Action{EventLoopHostOptions}?)"/>.
/// </summary>
public sealed class EventLoopHostedService : IHostedService, IAsyncDisposable, IDisposable
{
    private readonly Action<EventLoop, int> _configure;
    private readonly EventLoopHostOptions _options;
    private readonly IHostApplicationLifetime? _lifetime;
    private readonly ILogger _logger;
    private readonly IMeterFactory? _meterFactory;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<EventLoop> _loops = [];
    private readonly List<Task> _watchers = [];
    private volatile bool _stopping;
    private bool _disposed;

    /// <summary>A service that runs loops configured by <paramref name="configure"/> (called with each loop and
    /// its index). <paramref name="lifetime"/> is stopped when a loop ends on its own (see
    /// <see cref="EventLoopHostOptions.StopApplicationWhenALoopEnds"/>); <paramref name="logger"/> hears of it. The loops
    /// are counted in the <c>IoMux.Loop</c> meter <paramref name="meterFactory"/> makes (the host's, so the meter is
    /// scoped to the host and disposed with it), or in the process-wide one when it is null.
    /// <paramref name="options"/> are the host's (null: the defaults); they are validated when the service starts.</summary>
    public EventLoopHostedService(Action<EventLoop, int> configure, IOptions<EventLoopHostOptions>? options = null,
        IHostApplicationLifetime? lifetime = null, ILogger<EventLoopHostedService>? logger = null, IMeterFactory? meterFactory = null)
    {
        _meterFactory = meterFactory;
        _configure = configure ?? throw new ArgumentNullException(nameof(configure));
        _options = options?.Value ?? new EventLoopHostOptions();
        _lifetime = lifetime;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The loops, in index order, once <see cref="StartAsync"/> made them; empty before.</summary>
    public IReadOnlyList<EventLoop> Loops => _loops;

    /// <summary>Makes, configures and starts the loops. If making or configuring one fails, the loops made so
    /// far are disposed (none was started) and the exception propagates: the host does not start.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">Started already.</exception>
    /// <exception cref="OptionsValidationException">The options cannot work (checked here too for a service made
    /// without a host, whose start would otherwise validate them).</exception>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (_loops.Count > 0)
            throw new InvalidOperationException("The loops were started already.");
        EventLoopHostOptionsValidator.ThrowIfInvalid(_options);
        try
        {
            for (int i = 0; i < _options.ThreadCount; i++)
            {
                var poller = _options.Backend is { } backend ? PollerFactory.Create(backend) : PollerFactory.Create();
                var loop = new EventLoop(poller);
                _loops.Add(loop);
                if (_meterFactory is not null)
                    LoopMetrics.UseMeterFactory(loop, _meterFactory);
                _configure(loop, i);
            }
        }
        catch
        {
            foreach (var loop in _loops)
                loop.Dispose();
            _loops.Clear();
            throw;
        }
        for (int i = 0; i < _loops.Count; i++)
            _watchers.Add(WatchAsync(i, _loops[i].RunAsync(_stop.Token)));
        _logger.LogInformation("IoMux: {Count} event loop(s) running on {Backend}.", _loops.Count, _loops[0].Poller.Capabilities.Name);
        return Task.CompletedTask;
    }

    /// <summary>Waits for one loop; a loop that ends while the host runs is reported (and stops the application
    /// unless told otherwise). Never throws: RunAsync's task is observed here.</summary>
    private async Task WatchAsync(int index, Task<int> run)
    {
        try
        {
            int code = await run.ConfigureAwait(false);
            if (!_stopping)
                _logger.LogWarning("IoMux: event loop {Index} exited with code {Code} while the host was running.", index, code);
        }
        catch (Exception e)
        {
            _logger.LogError(e, "IoMux: event loop {Index} stopped: a callback threw.", index);
        }
        if (!_stopping && _options.StopApplicationWhenALoopEnds)
            _lifetime?.StopApplication();
    }

    /// <summary>Asks every loop to exit and waits until all have, or until <paramref name="cancellationToken"/>
    /// (the host's shutdown timeout) gives up waiting; a loop still running then is logged and left to finish
    /// on its own. Does not throw for a loop that failed: that was logged when it happened.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        if (_watchers.Count == 0)
            return;
        await _stop.CancelAsync().ConfigureAwait(false);
        var all = Task.WhenAll(_watchers);
        await all.WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (!all.IsCompleted)
            _logger.LogWarning("IoMux: {Count} event loop(s) had not exited when the host stopped waiting.", _watchers.Count(w => !w.IsCompleted));
    }

    /// <summary>Disposes the loops that have exited (their threads have ended then). A loop still running because
    /// it did not exit in time is asked to exit but not waited for: its thread is a background thread, and a
    /// host that gave up waiting should not hang in its disposal.</summary>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>As <see cref="DisposeAsync"/>: nothing in it waits (an exited loop's thread has ended already).</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _stopping = true;
        _stop.Cancel();
        for (int i = 0; i < _loops.Count; i++)
        {
            if (i >= _watchers.Count || _watchers[i].IsCompleted)
                _loops[i].Dispose();
        }
        _stop.Dispose();
    }
}
