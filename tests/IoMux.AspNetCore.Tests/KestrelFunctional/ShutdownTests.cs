using System.Diagnostics;
using System.Net;

namespace IoMux.Tests.AspNetCore;

public sealed partial class KestrelFunctionalTests
{
    /// <summary>Not one of Kestrel's own tests, but what a host meets in production: a client that asked for a large
    /// response and stopped reading holds the connection with the app blocked in a write (the socket buffers full,
    /// the transport's output paused). Stopping the host with a 1 s grace must end it: Kestrel waits the grace, then
    /// aborts the connection; the transport must release the app's pending write, signal RequestAborted and end the socket,
    /// so the stop returns and the client sees the end. Both transports, the same assertions.</summary>
    [Test, CancelAfter(90_000)]
    public async Task AStopEndsAResponseTheClientNeverReadsAfterTheGrace(CancellationToken token)
    {
        var host = await FunctionalHost.StartAsync(target, (h, o) => h.Listen(o, "http", IPAddress.Loopback));
        long written = 0;
        var appEnded = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Handler = async ctx =>
        {
            var chunk = new byte[64 * 1024];
            try
            {
                for (int i = 0; i < 4096; i++) // 256 MiB at most: bounded even if nothing pushed back
                {
                    await ctx.Response.Body.WriteAsync(chunk, ctx.RequestAborted);
                    Interlocked.Add(ref written, chunk.Length);
                }
            }
            catch (Exception)
            {
                // a write that saw the abort: RequestAborted below says whether it was one
            }
            // Kestrel makes writes after an abort no-ops and signals RequestAborted from another thread, so the loop
            // above may run out first: what the app must see, within a bound, is RequestAborted.
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(10), ctx.RequestAborted);
                appEnded.TrySetResult("completed");
            }
            catch (OperationCanceledException)
            {
                appEnded.TrySetResult("aborted");
            }
        };
        try
        {
            using var client = await RawClient.ConnectAsync(host.Port(), token);
            await client.SendAsync(token, "GET / HTTP/1.1", "Host: localhost", "", "");
            // The client reads nothing; the app writes until the buffers are full and its write waits.
            var stall = Stopwatch.StartNew();
            for (long last = -1; ;)
            {
                await Task.Delay(500, token);
                long now = Interlocked.Read(ref written);
                if (now > 0 && now == last)
                    break;
                last = now;
                if (stall.Elapsed > TimeSpan.FromSeconds(30))
                    Assert.Fail($"the app's writes never stalled ({now} bytes written)");
            }
            Assert.That(appEnded.Task.IsCompleted, Is.False, "the app waits in its write");

            var stopping = Stopwatch.StartNew();
            using (var grace = new CancellationTokenSource(TimeSpan.FromSeconds(1)))
                await Within(host.StopAsync(grace.Token), token, 30);
            var stopped = stopping.Elapsed;
            Assert.That(stopped, Is.LessThan(TimeSpan.FromSeconds(10)), "the stop returned soon after the grace");
            Assert.That(await Within(appEnded.Task, token, 20), Is.EqualTo("aborted"), "the app saw RequestAborted");
            var (bytes, end) = await client.DrainAsync(token);
            TestContext.Out.WriteLine($"{target}: stop {stopped.TotalMilliseconds:F0} ms, app ended with {appEnded.Task.Result}, client read {bytes} bytes then {end}");
            Assert.That(end, Is.EqualTo("RST"), "Kestrel aborts the connection at the end of the grace, and an abort resets it");
        }
        finally
        {
            await host.DisposeAsync();
        }
    }
}
