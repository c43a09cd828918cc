import type { S3Client } from '@aws-sdk/client-s3';

export interface SentCommand {
  command: string;
  input: Record<string, unknown>;
  output?: Record<string, unknown>;
}

/**
 * Records every command the client sends, with its input and output, to assert the protocol
 * (which requests a write made, in which order, with how many bytes).
 */
export function recordCommands(client: S3Client): SentCommand[] {
  const sent: SentCommand[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const entry: SentCommand = {
        command: context.commandName ?? '?',
        input: args.input as Record<string, unknown>,
      };
      sent.push(entry);
      const result = await next(args);
      entry.output = result.output as unknown as Record<string, unknown>;
      return result;
    },
    { step: 'initialize', name: 'recordCommands' },
  );
  return sent;
}

export const commandNames = (sent: SentCommand[]): string[] => sent.map((s) => s.command);
