using System.Buffers;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace IoMux.AspNetCore;

/// <summary>Kestrel's transport factory for IoMux: binds TCP, Unix-domain and socket-activation endpoints, each
/// served by the factory's event loops (started at the first bind, stopped when the host disposes the factory).</summary>
public sealed class IoMuxTransportFactory : IConnectionListenerFactory, IConnectionListenerFactorySelector, IAsyncDisposable, IDisposable
{
    private readonly IoMuxTransportOptions _options;
    private readonly ILogger _logger, _connectionLogger;
    private readonly IMemoryPoolFactory<byte>? _memoryPoolFactory;
    private readonly IMeterFactory? _meterFactory;
    private readonly object _gate = new();
    private LoopGroup? _loops;
    private TransportDescriptors? _descriptors;

    /// <summary>Made by dependency injection (<see cref="IoMuxWebHostBuilderExtensions.UseIoMux"/>).</summary>
    /// <param name="options">The transport's options.</param>
    /// <param name="loggerFactory">Logs (none when null).</param>
    /// <param name="memoryPoolFactory">Where each listener's buffers come from. Kestrel (.NET 10) registers one: its
    /// pools give idle blocks back (an adaptive eviction every 10 s on Kestrel's heartbeat) and publish the
    /// <c>aspnetcore.memory_pool.*</c> instruments (meter <c>Microsoft.AspNetCore.MemoryPool</c>, owner
    /// <c>iomux</c>). Without one (a factory made by hand) IoMux's own pool is used, which keeps what it allocated
    /// until the listener goes and publishes nothing.</param>
    /// <param name="meterFactory">The host's: the loops are counted in the <c>IoMux.Loop</c> meter it makes (see
    /// <see cref="IoMux.Loop.LoopMetrics.UseMeterFactory"/>); without one, in the process-wide meter.</param>
    public IoMuxTransportFactory(IOptions<IoMuxTransportOptions> options, ILoggerFactory? loggerFactory = null,
        IMemoryPoolFactory<byte>? memoryPoolFactory = null, IMeterFactory? meterFactory = null)
    {
        _meterFactory = meterFactory;
        _options = options.Value; // validated here when the host registered the validator (UseIoMux)
        IoMuxTransportOptionsValidator.ThrowIfInvalid(_options); // and when it did not (a factory made by hand)
        loggerFactory ??= NullLoggerFactory.Instance;
        _logger = loggerFactory.CreateLogger(TransportLog.Category);
        _connectionLogger = loggerFactory.CreateLogger(TransportLog.ConnectionCategory);
        _memoryPoolFactory = memoryPoolFactory;
    }

    /// <summary>As Kestrel's socket transport: one pool per listener, from the host's factory when it has one.</summary>
    private MemoryPool<byte> CreatePool() =>
        _memoryPoolFactory?.Create(new MemoryPoolOptions { Owner = MemoryPoolOwner }) ?? new PinnedBlockMemoryPool();

    /// <summary>The <c>aspnetcore.memory_pool.owner</c> attribute of the transport's pools.</summary>
    internal const string MemoryPoolOwner = "iomux";

    /// <inheritdoc />
    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint or UnixDomainSocketEndPoint or FileHandleEndPoint;

    /// <inheritdoc />
    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var socket = ListenSocket.Open(endpoint, _options.Backlog);
        LoopGroup loops;
        TransportDescriptors descriptors;
        lock (_gate)
        {
            if (_loops is null)
            {
                _loops = new LoopGroup(_options);
                TransportMetrics.UseHostMeter(_loops, _meterFactory);
                _logger.LogInformation("IoMux transport: {Count} loop(s) on {Backend}, application code {Scheduling}",
                    _loops.Count, _loops.BackendName, _options.Scheduling == ApplicationScheduling.Inline ? "inline on the loops" : "on the thread pool");
            }
            loops = _loops;
            descriptors = _descriptors ??= new TransportDescriptors();
        }
        IConnectionListener listener = new IoMuxConnectionListener(socket, loops, _options, descriptors, CreatePool(), _logger, _connectionLogger,
            ownsSocketFile: endpoint is UnixDomainSocketEndPoint); // a path bound here; never a handle's (systemd's socket)
        return ValueTask.FromResult(listener);
    }

    /// <summary>Stops the loops (their threads end). Connections still open are closed.</summary>
    public void Dispose()
    {
        LoopGroup? loops;
        TransportDescriptors? descriptors;
        lock (_gate)
        {
            loops = _loops;
            _loops = null;
            descriptors = _descriptors;
            _descriptors = null;
        }
        loops?.Dispose();
        descriptors?.Dispose();
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
