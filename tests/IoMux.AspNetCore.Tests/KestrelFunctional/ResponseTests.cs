using System.Net.Sockets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace IoMux.Tests.AspNetCore;

/// <summary>Restated from aspnetcore's FunctionalTests/ResponseTests.cs.</summary>
public sealed partial class KestrelFunctionalTests
{
    [Test, CancelAfter(30_000), Description("ResponseTests.LargeDownload")]
    public async Task ALargeDownloadArrivesWholeAndInOrder(CancellationToken token)
    {
        _host.Handler = async ctx =>
        {
            var bytes = new byte[1024];
            for (int i = 0; i < bytes.Length; i++)
                bytes[i] = (byte)i;
            ctx.Response.ContentLength = bytes.Length * 1024;
            for (int i = 0; i < 1024; i++)
                await ctx.Response.Body.WriteAsync(bytes);
        };
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{_host.Port()}"), Timeout = TimeSpan.FromSeconds(20) };
        var body = await client.GetByteArrayAsync("/", token);
        Assert.That(body, Has.Length.EqualTo(1024 * 1024));
        int wrong = Enumerable.Range(0, body.Length).FirstOrDefault(i => body[i] != (byte)(i % 256), -1);
        Assert.That(wrong, Is.EqualTo(-1), "every byte in order");
    }

    [Test, CancelAfter(30_000), Description("ResponseTests.WriteAfterConnectionCloseNoops")]
    public async Task WritingAfterTheClientLeftIsANoOp(CancellationToken token)
    {
        var started = Signal();
        var closed = Signal();
        var completed = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            try
            {
                started.TrySetResult();
                await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
                ctx.Response.ContentLength = 12;
                await ctx.Response.WriteAsync("hello, world");
                completed.TrySetResult(null);
            }
            catch (Exception e)
            {
                completed.TrySetResult(e);
            }
        };
        using (var client = await RawClient.ConnectAsync(_host.Port(), token))
        {
            await client.SendAsync(token, EmptyGet);
            await Within(started.Task, token);
            client.Socket.Shutdown(SocketShutdown.Send);
            Assert.That(await client.ReadToEndAsync(token), Is.EqualTo("FIN"), "the server ends a half-closed connection in order");
        }
        closed.TrySetResult();
        Assert.That(await Within(completed.Task, token), Is.Null, "the late write neither throws nor hangs");
    }

    [Test, CancelAfter(30_000), Description("ResponseTests.ThrowsOnWriteWithRequestAbortedTokenAfterRequestIsAborted")]
    public async Task AWriteWithTheAbortedRequestsTokenThrows(CancellationToken token)
    {
        var started = Signal();
        var aborted = Signal();
        var write = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            ctx.RequestAborted.Register(() => aborted.TrySetResult());
            started.TrySetResult();
            try
            {
                await aborted.Task.WaitAsync(TimeSpan.FromSeconds(10));
                await ctx.Response.WriteAsync(new string('a', 65537), ctx.RequestAborted);
                write.TrySetResult(null);
            }
            catch (Exception e)
            {
                write.TrySetResult(e);
            }
        };
        using (var client = await RawClient.ConnectAsync(_host.Port(), token))
        {
            await client.SendAsync(token, "POST / HTTP/1.1", "Host:", "Content-Length: 0", "", "");
            await Within(started.Task, token);
        }
        Assert.That(await Within(write.Task, token), Is.InstanceOf<OperationCanceledException>());
        Assert.That(aborted.Task.IsCompleted, Is.True, "RequestAborted fired");
    }

    [Test, CancelAfter(30_000), Description("ResponseTests.WritingToConnectionAfterUnobservedCloseTriggersRequestAbortedToken")]
    public async Task WritingToAConnectionWhoseCloseWentUnseenFiresRequestAborted(CancellationToken token)
    {
        var host = await SmallAsync();
        var aborted = Signal();
        var clientClosed = Signal();
        var write = Signal<Exception?>();
        host.Handler = async ctx =>
        {
            ctx.RequestAborted.Register(() => aborted.TrySetResult());
            var scratch = new byte[SmallBuffer * 8];
            try
            {
                await clientClosed.Task.WaitAsync(TimeSpan.FromSeconds(10));
                for (int i = 0; i < 1000; i++)
                {
                    await ctx.Response.Body.WriteAsync(scratch, ctx.RequestAborted);
                    await Task.Delay(10);
                }
                write.TrySetResult(null);
            }
            catch (Exception e)
            {
                write.TrySetResult(e);
            }
        };
        await SendUntilPausedThenCloseAsync(host, token);
        clientClosed.TrySetResult();
        Assert.That(await Within(write.Task, token, 20), Is.InstanceOf<OperationCanceledException>());
        Assert.That(aborted.Task.IsCompleted, Is.True, "RequestAborted fired");
    }

    [Test, CancelAfter(30_000), Description("ResponseTests.AppCanHandleClientAbortingConnectionMidResponse")]
    public async Task AClientResetDuringTheResponseFiresRequestAbortedAndLogsAtDebugOnly(CancellationToken token)
    {
        var aborted = Signal();
        var completed = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            ctx.RequestAborted.Register(() => aborted.TrySetResult());
            var scratch = new byte[65536];
            try
            {
                for (int i = 0; i < 100 && !ctx.RequestAborted.IsCancellationRequested; i++)
                {
                    await ctx.Response.Body.WriteAsync(scratch);
                    await Task.Delay(10);
                }
                await aborted.Task.WaitAsync(TimeSpan.FromSeconds(10));
                completed.TrySetResult(null);
            }
            catch (Exception e)
            {
                completed.TrySetResult(e);
            }
        };
        var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, EmptyGet);
        await client.ReceiveAsync("HTTP/1.1 200", token); // just part of the response
        client.Reset();
        await Within(aborted.Task, token);
        Assert.That(await Within(completed.Task, token, 20), Is.Null, "the app finished normally");
        // Linux may deliver the close as a FIN despite SO_LINGER 0, as Kestrel's test allows.
        await _host.WaitForLogAsync(l => l.IsTransport && l.Event.Name is "ConnectionReset" or "ConnectionReadFin", "ConnectionReset or ConnectionReadFin", token);
        Assert.That(_host.Logs.Where(l => l.IsTransport && l.Level > Microsoft.Extensions.Logging.LogLevel.Debug), Is.Empty, "the transport logged nothing above Debug");
    }

    [Test, CancelAfter(30_000), Description("ResponseTests.ClientAbortingConnectionImmediatelyIsNotLoggedHigherThanDebug")]
    public async Task ClientsThatResetAtOnceAreLoggedAtDebugOnly(CancellationToken token)
    {
        for (int i = 0; i < 10; i++)
        {
            var client = await RawClient.ConnectAsync(_host.Port(), token);
            await client.SendAsync(token, EmptyGet);
            client.Reset();
        }
        // The last one's reset reached the transport (or its request was served) before the logs are read.
        await _host.WaitForLogAsync(l => l.Event.Name == "ConnectionStop", "ConnectionStop", token);
        await Task.Delay(200, token);
        Assert.That(_host.Logs.Where(l => l.IsTransport && l.Level > Microsoft.Extensions.Logging.LogLevel.Debug), Is.Empty, "transport: Debug at most");
        Assert.That(_host.Logs.Where(l => l.IsKestrelCore && l.Level > Microsoft.Extensions.Logging.LogLevel.Information), Is.Empty, "Kestrel: Information at most");
    }

    [Test, CancelAfter(30_000), Description("ResponseTests.ConnectionClosedWhenResponseDoesNotSatisfyMinimumDataRate")]
    public async Task AClientTooSlowForTheMinimumResponseRateIsCutOff(CancellationToken token)
    {
        // 64 MiB, far more than the kernel's buffers hold, in 16 KiB writes (Kestrel's test: 256 MiB in 1 KiB ones).
        const int chunk = 16 * 1024, chunks = 4 * 1024;
        var aborted = Signal();
        var app = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            // A high rate (Kestrel's test: 1 MiB/s): every byte sent earns bytes/rate of allowance, and what fills the
            // kernel's buffers would earn seconds at a low one; so the cut-off comes about the grace period after they fill.
            ctx.Features.Get<IHttpMinResponseDataRateFeature>()!.MinDataRate = new MinDataRate(bytesPerSecond: 100 * 1024 * 1024, gracePeriod: TimeSpan.FromSeconds(2));
            ctx.RequestAborted.Register(() => aborted.TrySetResult());
            ctx.Response.ContentLength = (long)chunk * chunks;
            var data = new byte[chunk];
            try
            {
                for (int i = 0; i < chunks; i++)
                    await ctx.Response.Body.WriteAsync(data, ctx.RequestAborted);
                app.TrySetResult(null);
            }
            catch (Exception e)
            {
                app.TrySetResult(e);
            }
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, EmptyGet);
        await Within(aborted.Task, token, 20); // the client reads nothing
        // Kestrel's test expects the cancellation; the write pending at the abort gets it, but if the abort lands
        // between writes the rest are no-ops (as WriteAfterConnectionCloseNoops): seen once in 12 runs on epoll, a
        // race in Kestrel's core that the transport does not decide. Any other outcome fails.
        Assert.That(await Within(app.Task, token), Is.Null.Or.InstanceOf<OperationCanceledException>());
        await _host.WaitForLogAsync(l => l.Event.Name == "ResponseMinimumDataRateNotSatisfied", "ResponseMinimumDataRateNotSatisfied", token);
        var (bytes, _) = await client.DrainAsync(token);
        Assert.That(bytes, Is.LessThan((long)chunk * chunks), "the response was cut off");
    }
}
