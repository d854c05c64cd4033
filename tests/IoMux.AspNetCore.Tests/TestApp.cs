using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography;
using IoMux.AspNetCore;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace IoMux.Tests.AspNetCore;

/// <summary>A transport under test: an IoMux backend (native or a model), or Kestrel's own socket transport as
/// the reference the same tests run against.</summary>
public sealed record TransportTarget(string Name, BackendProvider? Backend, ApplicationScheduling Scheduling = ApplicationScheduling.ThreadPool)
{
    public override string ToString() => Name;

    public static IEnumerable<TransportTarget> All()
    {
        var providers = Models.ModelTargets.WithNative;
        foreach (var name in new[] { "epoll", "poll", "select", "kqueue-model-freebsd-14", "ports-model" })
            yield return new TransportTarget(name, providers.Single(p => p.Name == name));
        yield return new TransportTarget("epoll-inline", providers.Single(p => p.Name == "epoll"), ApplicationScheduling.Inline);
        yield return new TransportTarget("kestrel-sockets", null);
    }

    public bool IsModel => Backend is { } b && b.Name.Contains("model", StringComparison.Ordinal);
}

/// <summary>A real ASP.NET Core app (minimal APIs, WebSockets) on the transport under test, bound to loopback.</summary>
public sealed class TestApp : IAsyncDisposable
{
    public static readonly byte[] Hello = "Hello, World!"u8.ToArray();
    private readonly WebApplication _app;
    public long SlowStreamWritten;
    public readonly TaskCompletionSource<Exception?> UploadOutcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public readonly TaskCompletionSource UploadStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    /// <summary>/wait: set when the handler started waiting, and when its RequestAborted fired (Stopwatch.GetTimestamp()).</summary>
    public readonly TaskCompletionSource WaitStarted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public readonly TaskCompletionSource<long> WaitAborted = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private TestApp(WebApplication app) => _app = app;

    public Uri BaseAddress { get; private set; } = null!;
    /// <summary>Every address the server listens on (IServerAddressesFeature).</summary>
    public IReadOnlyList<string> Addresses { get; private set; } = [];
    public int Port => BaseAddress.Port;
    public IServiceProvider Services => _app.Services;

    /// <param name="transport">Configures the IoMux transport (IoMux targets).</param>
    /// <param name="sockets">Configures Kestrel's socket transport (the kestrel-sockets target).</param>
    /// <param name="logs">Receives the transports' logs at Debug (both targets).</param>
    public static async Task<TestApp> StartAsync(TransportTarget target, Action<KestrelServerOptions>? listen = null, int threads = 2,
        Action<IoMuxTransportOptions>? transport = null, Action<SocketTransportOptions>? sockets = null, ILoggerProvider? logs = null,
        IDictionary<string, string?>? configuration = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        if (configuration is not null)
            builder.Configuration.AddInMemoryCollection(configuration);
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        if (logs is not null)
        {
            builder.Logging.AddProvider(logs);
            builder.Logging.AddFilter("IoMux.AspNetCore", LogLevel.Debug);
            builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets", LogLevel.Debug);
        }
        if (sockets is not null)
            builder.Services.Configure(sockets);
        builder.WebHost.ConfigureKestrel(o =>
        {
            o.Limits.MaxRequestBodySize = null;
            if (listen is null)
                o.Listen(IPAddress.Loopback, 0);
            else
                listen(o);
        });
        if (target.Backend is { } backend)
        {
            builder.WebHost.UseIoMux(o =>
            {
                o.ThreadCount = threads;
                o.PollerOverride = () => new Poller(backend.Create());
                o.Scheduling = target.Scheduling;
                transport?.Invoke(o);
            });
        }
        var app = builder.Build();
        var test = new TestApp(app);
        app.UseWebSockets();
        app.MapGet("/hello", () => Results.Bytes(Hello, "text/plain"));
        app.MapPost("/echo", async (HttpContext ctx) =>
        {
            ctx.Response.ContentType = "application/octet-stream";
            await ctx.Request.Body.CopyToAsync(ctx.Response.Body);
        });
        app.MapPost("/sha256", async (HttpContext ctx) =>
        {
            try
            {
                using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                var buffer = new byte[64 * 1024];
                long total = 0;
                for (int n; (n = await ctx.Request.Body.ReadAsync(buffer)) > 0;)
                {
                    sha.AppendData(buffer, 0, n);
                    total += n;
                    test.UploadStarted.TrySetResult();
                }
                test.UploadOutcome.TrySetResult(null);
                return Results.Text($"{total} {Convert.ToHexString(sha.GetHashAndReset())}");
            }
            catch (Exception e)
            {
                test.UploadOutcome.TrySetResult(e);
                throw;
            }
        });
        app.MapGet("/bytes/{count:long}", async (HttpContext ctx, long count) =>
        {
            ctx.Response.ContentType = "application/octet-stream";
            ctx.Response.ContentLength = count;
            var block = Pattern(64 * 1024);
            for (long sent = 0; sent < count;)
            {
                int n = (int)Math.Min(block.Length, count - sent);
                await ctx.Response.Body.WriteAsync(block.AsMemory(0, n));
                sent += n;
                Interlocked.Add(ref test.SlowStreamWritten, n);
            }
        });
        app.MapGet("/delay/{ms:int}", async (int ms) =>
        {
            await Task.Delay(ms);
            return Results.Text("late but complete");
        });
        app.MapGet("/abort", (HttpContext ctx) => ctx.Abort());
        app.MapGet("/wait", async (HttpContext ctx) =>
        {
            // What a handler does with a client that may leave: wait on RequestAborted (issue 23).
            test.WaitStarted.TrySetResult();
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(30), ctx.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                test.WaitAborted.TrySetResult(System.Diagnostics.Stopwatch.GetTimestamp());
                return;
            }
            await ctx.Response.WriteAsync("waited 30 s");
        });
        app.MapGet("/socket", (HttpContext ctx) =>
        {
            var socket = ctx.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionSocketFeature>()?.Socket;
            return socket is null ? "none"
                : $"{socket.RemoteEndPoint} {socket.LocalEndPoint} nodelay={(socket.AddressFamily == System.Net.Sockets.AddressFamily.Unix ? "n/a" : socket.NoDelay.ToString())}";
        });
        app.MapGet("/whoami", (HttpContext ctx) =>
            $"{ctx.Connection.RemoteIpAddress}:{ctx.Connection.RemotePort} {ctx.Connection.LocalIpAddress}:{ctx.Connection.LocalPort} {ctx.Connection.Id}");
        app.Map("/ws", async (HttpContext ctx) =>
        {
            if (!ctx.WebSockets.IsWebSocketRequest)
            {
                ctx.Response.StatusCode = 400;
                return;
            }
            using var ws = await ctx.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var received = await ws.ReceiveAsync(buffer, CancellationToken.None);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None);
                    return;
                }
                await ws.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, CancellationToken.None);
            }
        });
        await app.StartAsync();
        test.Addresses = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<IServerAddressesFeature>()!.Addresses.ToArray();
        var address = test.Addresses[0];
        // A handle or Unix-socket endpoint has no usable URI here; its tests address it themselves.
        test.BaseAddress = Uri.TryCreate(address.Replace("[::]", "127.0.0.1").Replace("0.0.0.0", "127.0.0.1"), UriKind.Absolute, out var uri) && uri.Port > 0
            ? uri : new Uri("http://127.0.0.1:1");
        return test;
    }

    /// <summary>The bytes /bytes/N sends: a repeating, position-dependent pattern.</summary>
    public static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
            bytes[i] = (byte)(i * 31 + (i >> 8));
        return bytes;
    }

    public Task StopAsync() => _app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
