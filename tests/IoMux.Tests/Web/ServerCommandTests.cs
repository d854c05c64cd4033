using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using IoMux.Tests.Proxy;

namespace IoMux.Tests.Web;

/// <summary>The servers as the iomux command runs them: started, answering on loopback, stopped by SIGTERM with
/// exit code 0.</summary>
[Category("System")]
[NonParallelizable]
public sealed partial class ServerCommandTests
{
    [Test, CancelAfter(60_000)]
    public async Task IomuxHelloServeAndEchoAnswerAndStopOnSigterm()
    {
        var root = Directory.CreateTempSubdirectory("iomux-serve-cmd-").FullName;
        File.WriteAllText(Path.Combine(root, "page.txt"), "served by iomux");
        try
        {
            await Run(["hello"], async port =>
            {
                using var http = new HttpClient();
                Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/"), Is.EqualTo("Hello, World!"));
            });
            await Run(["serve", root], async port =>
            {
                using var http = new HttpClient();
                Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/page.txt"), Is.EqualTo("served by iomux"));
            });
            await Run(["echo"], async port =>
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync("127.0.0.1", port);
                await socket.SendAsync(Encoding.ASCII.GetBytes("ping"), SocketFlags.None);
                var buffer = new byte[4];
                int got = 0;
                while (got < 4)
                    got += await socket.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None);
                Assert.That(Encoding.ASCII.GetString(buffer), Is.EqualTo("ping"));
            });
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Out of descriptors, the server stops polling its listener for a while instead of spinning on it,
    /// says so, and serves again once descriptors are available.</summary>
    [Test, CancelAfter(60_000)]
    public async Task OutOfDescriptorsTheServerPausesAcceptingWithoutSpinning()
    {
        await Run(["hello"], async port =>
        {
            using var http = new HttpClient();
            Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/"), Is.EqualTo("Hello, World!")); // warm
            int pid = s_current!.Id;
            int open = Directory.GetFiles($"/proc/{pid}/fd").Length;
            TestProcesses.SetDescriptorLimit(pid, open + 1);
            var clients = new List<Socket>();
            try
            {
                for (int i = 0; i < 4; i++)
                {
                    var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                    await client.ConnectAsync("127.0.0.1", port); // completes in the backlog
                    clients.Add(client);
                }
                await Task.Delay(500);
                long before = TestProcesses.CpuTicks(pid);
                await Task.Delay(1000);
                Assert.That(TestProcesses.CpuTicks(pid) - before, Is.LessThan(30), "the server spins while out of descriptors");
                lock (s_log)
                    Assert.That(s_log.ToString(), Does.Contain("accept: EMFILE"));
            }
            finally
            {
                foreach (var client in clients)
                    client.Dispose();
            }
            TestProcesses.SetDescriptorLimit(pid, open + 200);
            using var again = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            Assert.That(await again.GetStringAsync($"http://127.0.0.1:{port}/"), Is.EqualTo("Hello, World!"));
        });
    }

    private static Process? s_current;
    private static readonly System.Text.StringBuilder s_log = new();

    /// <summary>The server process <see cref="Run"/> is exercising (for /proc/PID/...).</summary>
    internal static int CurrentServerPid => s_current!.Id;

    /// <summary>Starts `iomux COMMAND` on a free loopback port with <paramref name="threads"/> loop threads, runs
    /// <paramref name="exercise"/> against the port, then checks that SIGTERM stops it with exit code 0.</summary>
    internal static async Task Run(string[] command, Func<int, Task> exercise, int threads = 2)
    {
        int port = ProxyProcess.FreePort();
        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "IoMux.Cli")) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in command.Concat(["--port", port.ToString(), "--threads", threads.ToString()]))
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        s_current = process;
        s_log.Clear();
        try
        {
            var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null)
                    return;
                lock (s_log)
                    s_log.AppendLine(e.Data);
                if (e.Data.Contains("listening on", StringComparison.Ordinal))
                    listening.TrySetResult(e.Data);
            };
            process.BeginErrorReadLine();
            var line = await listening.Task.WaitAsync(TimeSpan.FromSeconds(20));
            Assert.That(line, Does.Contain($"listening on 127.0.0.1:{port} with {threads} loop thread(s)"));
            try
            {
                await exercise(port);
            }
            catch (Exception e) when (e is not AssertionException)
            {
                lock (s_log)
                    throw new InvalidOperationException($"{e.GetType().Name}: {e.Message}\nserver log:\n{s_log}", e);
            }
            Assert.That(TestProcesses.Signal(process.Id, 15), Is.EqualTo(0));
            Assert.That(process.WaitForExit(10_000), Is.True, "SIGTERM did not stop the server");
            process.WaitForExit(); // flushes the redirected stderr into the log
            lock (s_log)
                Assert.That(process.ExitCode, Is.EqualTo(0), s_log.ToString());
        }
        finally
        {
            if (!process.HasExited)
                process.Kill();
        }
    }
}
